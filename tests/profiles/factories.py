from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from profiles import services
from profiles.models import Workspace


class _UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"steward{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


def UserFactory(**kwargs: Any) -> User:
    """A steward user (typed for mypy: factory_boy's call is not)."""
    user: User = _UserFactory(**kwargs)  # type: ignore[assignment]
    return user


class WorkspaceFactory(factory.django.DjangoModelFactory[Workspace]):
    """Workspaces made through the service, so they carry the seeded rules and trait schema."""

    class Meta:
        model = Workspace

    slug = factory.Sequence(lambda n: f"ws{n}")
    name = factory.LazyAttribute(lambda w: w.slug.title())

    @classmethod
    def _create(cls, model_class: type[Workspace], *args: Any, **kwargs: Any) -> Workspace:
        existing = model_class.objects.filter(slug=kwargs["slug"]).first()
        return existing or services.workspace_create(slug=kwargs["slug"], name=kwargs["name"])


def make_profile(workspace: Workspace) -> Any:
    """A profile with its first data key, made through the service."""
    profile, _key = services.profile_create(workspace=workspace)
    return profile
