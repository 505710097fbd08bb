"""Migration governance 0006 moves request assignments made before it from guardian's generic
tables to the requests' own permission tables (and drops those of requests gone)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("governance", "0005_retention_reports_cancellation")]
AFTER = [("governance", "0006_request_object_permissions")]


@pytest.mark.django_db(transaction=True)
def test_generic_assignments_move_to_the_direct_table(workspace: Any, owner: Any) -> None:
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import UserObjectPermission

    from governance.models import DataSubjectRequest, RequestUserObjectPermission
    from tests.governance.request_helpers import verified

    # given: the schema before 0006, an assignment in the generic table, and one of a request
    # deleted since (the generic table has no foreign key to it)
    dsr = verified(workspace)
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    content_type = ContentType.objects.get_for_model(DataSubjectRequest)
    permission = Permission.objects.get(content_type=content_type, codename="handle_request")
    UserObjectPermission.objects.bulk_create(  # as guardian wrote them (save() needs the object)
        UserObjectPermission(
            user=owner, permission=permission, content_type=content_type, object_pk=object_pk
        )
        for object_pk in (str(dsr.pk), "0190a0a0-0000-7000-8000-000000000000")
    )
    # when
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    # then
    [row] = RequestUserObjectPermission.objects.all()
    assert (row.user_id, row.content_object_id) == (owner.pk, dsr.pk)
    assert not UserObjectPermission.objects.exists()
