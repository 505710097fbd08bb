"""Whether a workspace holds identifiers of a type (asked when a profile lookup by that type
finds nothing, to tell a misspelt parameter from an identifier nobody has): answered from the
partial index of the workspace's own types, never by reading every identity."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from profiles import selectors, services
from profiles.models import Identity
from tests.profiles.ingest_helpers import msg

CRM_ID = {"id": "C-1", "type": "crm_id"}


@pytest.fixture
def crm_identity(workspace: Any) -> None:
    source = services.source_create(workspace=workspace, name="CRM")
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id="u-1",
                context={"externalIds": [{"id": "C-1", "type": "crm_id"}]},
            )
        ],
    )
    assert Identity.objects.filter(identifier_type="crm_id").count() == 1


def test_types_are_known_when_built_in_declared_or_held(
    workspace: Any, other_workspace: Any, crm_identity: None
) -> None:
    assert selectors.identifier_type_known(workspace=workspace, identifier_type="email")
    assert selectors.identifier_type_known(workspace=workspace, identifier_type="crm_id")
    assert selectors.identifier_type_known(workspace=workspace, identifier_type="CRM-ID")
    assert not selectors.identifier_type_known(workspace=workspace, identifier_type="emial")
    assert not selectors.identifier_type_known(workspace=other_workspace, identifier_type="crm_id")


def test_the_held_type_check_reads_the_partial_index(
    workspace: Any, crm_identity: None, db_vendor: str
) -> None:
    if db_vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    # given: sequential scans priced out, as on a table of millions of identities
    query = Identity.objects.filter(workspace=workspace, identifier_type="loyalty_number")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        # when
        plan = query.explain()
    # then: the planner proves the type is not a built-in one and uses the partial index
    assert "identity_ws_custom_type" in plan, plan
