"""Shared fixtures. Personas (healthchecks' style): an owner steward with every role on the
workspace, a member with only `view_profiles`, and an outsider who stewards another workspace."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from profiles import services
from profiles.enums import WorkspaceRole
from tests.profiles.factories import UserFactory, WorkspaceFactory


@pytest.fixture(scope="session", autouse=True)
def _flush_respects_append_only_audit_table() -> Any:
    """Transactional tests end with `flush`, which on SQLite DELETEs every table; the audit
    table refuses DELETE by trigger. Let the test flush drop the triggers first and put them
    back after, so every test still runs against an append-only table."""
    from governance import triggers
    from governance.models import AuditLogEntry

    if connection.vendor != "sqlite":  # PostgreSQL flushes with TRUNCATE: no row trigger fires
        yield
        return
    operations = type(connection.ops)
    original = operations.sql_flush

    def sql_flush(self: Any, style: Any, tables: Any, **kwargs: Any) -> list[str]:
        statements = original(self, style, tables, **kwargs)
        if triggers.TABLE not in tables:
            return statements
        columns = triggers.guarded_columns(AuditLogEntry)
        return [
            *triggers.sqlite_drop(),
            *statements,
            *triggers.sqlite_create(columns),
        ]

    operations.sql_flush = sql_flush  # type: ignore[method-assign]
    yield
    operations.sql_flush = original  # type: ignore[method-assign]


def pytest_report_header(config: Any) -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME')}"


@pytest.fixture
def workspace(db: Any) -> Any:
    return WorkspaceFactory(slug="acme", name="Acme Store")


@pytest.fixture
def other_workspace(db: Any) -> Any:
    return WorkspaceFactory(slug="globex", name="Globex")


@pytest.fixture
def owner(workspace: Any) -> Any:
    user = UserFactory(username="owner", is_staff=True)
    services.steward_grant_roles(workspace=workspace, user=user, roles=WorkspaceRole.values)
    return user


@pytest.fixture
def member(workspace: Any) -> Any:
    user = UserFactory(username="member", is_staff=True)
    services.steward_grant_roles(
        workspace=workspace, user=user, roles=[WorkspaceRole.VIEW_PROFILES]
    )
    return user


@pytest.fixture
def outsider(other_workspace: Any) -> Any:
    user = UserFactory(username="outsider", is_staff=True)
    services.steward_grant_roles(workspace=other_workspace, user=user, roles=WorkspaceRole.values)
    return user


def _token_client(workspace: Any, permissions: list[str]) -> APIClient:
    issued = services.api_token_create(workspace=workspace, name="test", permissions=permissions)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


@pytest.fixture
def api_client(workspace: Any) -> APIClient:
    """A token on `workspace` with every role."""
    return _token_client(workspace, list(WorkspaceRole.values))


@pytest.fixture
def api_client_readonly(workspace: Any) -> APIClient:
    return _token_client(workspace, [WorkspaceRole.VIEW_PROFILES])


@pytest.fixture
def outsider_api_client(other_workspace: Any) -> APIClient:
    return _token_client(other_workspace, list(WorkspaceRole.values))


@pytest.fixture
def db_vendor(db: Any) -> str:
    return connection.vendor
