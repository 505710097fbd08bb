"""Entries written under an actor (every admin request, via AuditlogMiddleware) chain like
any other, and deleting that user later neither breaks the chain nor is refused."""

from __future__ import annotations

import pytest
from auditlog import get_logentry_model
from auditlog.context import set_actor
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connection, transaction

from governance import services as governance
from profiles import services


@pytest.mark.django_db(transaction=True)
def test_entries_under_an_actor_chain_and_survive_deleting_the_user() -> None:
    # given
    user = get_user_model().objects.create(username="steward-x", email="steward-x@example.com")
    with set_actor(user):
        services.workspace_create(slug="zz", name="ZZ")
    entry = get_logentry_model().objects.filter(actor=user).first()
    assert entry is not None
    user_pk = user.pk
    assert entry.actor_ref == f"user:{user_pk}"
    assert governance.audit_chain_verify().ok
    # when
    user.delete()
    # then
    entry.refresh_from_db()
    assert entry.actor_id is None
    assert entry.actor_ref == f"user:{user_pk}"
    assert governance.audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_the_actor_column_may_only_be_nulled() -> None:
    # given
    user = get_user_model().objects.create(username="steward-y", email="steward-y@example.com")
    services.workspace_create(slug="yy", name="YY")
    # when / then
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE governance_auditlogentry SET actor_id = %s", [user.pk])
    assert not get_logentry_model().objects.filter(actor=user).exists()


@pytest.mark.django_db(transaction=True)
def test_entries_in_an_unattributed_block_name_no_actor_even_under_one() -> None:
    from cdp.core import audit

    # given: a steward's request (the middleware sets the actor)
    user = get_user_model().objects.create(username="steward-z", email="steward-z@example.com")
    with set_actor(user):
        # when: work within it that is not the steward's, then the steward's own again
        with audit.unattributed():
            nobodys = services.workspace_create(slug="nobodys", name="Nobody's")
        stewards = services.workspace_create(slug="stewards", name="Steward's")
    # then
    entries = get_logentry_model().objects
    workspace_type = ContentType.objects.get_for_model(stewards)
    created = entries.filter(content_type=workspace_type, action=entries.model.Action.CREATE)
    assert created.get(object_pk=str(nobodys.pk)).actor_id is None
    assert created.get(object_pk=str(stewards.pk)).actor_id == user.pk
    assert governance.audit_chain_verify().ok
