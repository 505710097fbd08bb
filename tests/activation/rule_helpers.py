"""Hand-built event histories for the rule, computed-trait and membership tests: profiles and
events written directly, at exact times, so that window edges can be tested to the second."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from profiles import services
from profiles.enums import EventType, TraitClass
from profiles.models import Event, Profile, TraitSchema, Workspace

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_numbers = itertools.count(1)


def days_ago(days: float, *, seconds: float = 0) -> datetime:
    return AT - timedelta(days=days, seconds=seconds)


def classify(workspace: Workspace, *keys: str, classification: str = TraitClass.ATTRIBUTE) -> None:
    for key in keys:
        TraitSchema.objects.update_or_create(
            workspace=workspace, key=key, defaults={"classification": classification}
        )


class Store:
    """A workspace's profiles and events, made by hand."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.source = services.source_create(workspace=workspace, name=f"src-{next(_numbers)}")
        self.keys: dict[Any, Any] = {}

    def profile(
        self,
        *,
        seen: datetime | None = AT,
        first_seen: datetime | None = None,
        restricted: bool = False,
        **attributes: Any,
    ) -> Profile:
        profile, key = services.profile_create(workspace=self.workspace)
        profile.attributes = attributes
        profile.last_seen_at = seen
        profile.first_seen_at = first_seen or seen
        profile.restricted = restricted
        profile.save()
        self.keys[profile.pk] = key
        return profile

    def event(
        self, profile: Profile, name: str, at: datetime, kind: str = EventType.TRACK, **props: Any
    ) -> Event:
        return Event.objects.create(
            workspace=self.workspace,
            profile=profile,
            origin_profile_id=profile.pk,
            source=self.source,
            message_id=f"m-{next(_numbers)}",
            type=kind,
            name=name,
            timestamp=at,
            received_at=at,
            properties=props,
            data_key=self.keys[profile.pk],
        )

    def events(self, profile: Profile, name: str, times: list[datetime], **props: Any) -> None:
        for at in times:
            self.event(profile, name, at, **props)
