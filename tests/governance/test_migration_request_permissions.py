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


@pytest.mark.django_db(transaction=True)
def test_going_back_puts_the_assignments_in_the_generic_tables_again(
    workspace: Any, owner: Any
) -> None:
    from django.contrib.auth.models import Group
    from guardian.models import GroupObjectPermission, UserObjectPermission
    from guardian.shortcuts import assign_perm

    from governance import services
    from tests.governance.request_helpers import verified

    # given: a user's and a group's assignment in the direct tables
    dsr = verified(workspace)
    services.request_assign(request=dsr, assignee=owner, actor=owner)
    group = Group.objects.create(name="privacy team")
    assign_perm("governance.handle_request", group, dsr)
    # when
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        # then: in guardian's generic tables, as the code before 0006 reads them
        user_row = UserObjectPermission.objects.get()
        assert (user_row.user_id, user_row.object_pk, user_row.permission.codename) == (
            owner.pk,
            str(dsr.pk),
            "handle_request",
        )
        assert user_row.content_type.model_class() is type(dsr)
        group_row = GroupObjectPermission.objects.get()
        assert (group_row.group_id, group_row.object_pk) == (group.pk, str(dsr.pk))
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
