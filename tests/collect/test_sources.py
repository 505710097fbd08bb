"""Sources: the service, the write-key selector and the create_source command."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from cdp.core.exceptions import Conflict, InvalidInput
from profiles import selectors, services
from profiles.models import Source


def test_source_create_issues_a_fresh_write_key(workspace: Any) -> None:
    # when
    first = services.source_create(workspace=workspace, name="Web")
    second = services.source_create(workspace=workspace, name="App", kind="app")
    # then
    assert len(first.write_key) == 32  # token_urlsafe(24)
    assert first.write_key != second.write_key
    assert (first.kind, first.enabled, first.rate_limit_per_minute) == ("website", True, 6000)
    assert second.kind == "app"


def test_source_create_normalizes_origins(workspace: Any) -> None:
    source = services.source_create(
        workspace=workspace,
        name="Web",
        allowed_origins=[
            "https://Shop.Example.com/",
            "https://shop.example.com:443",
            "http://localhost:8000",
        ],
        rate_limit_per_minute=120,
    )
    source.refresh_from_db()
    assert source.allowed_origins == ["https://shop.example.com", "http://localhost:8000"]
    assert source.rate_limit_per_minute == 120


@pytest.mark.parametrize(
    "origin",
    [
        "shop.example.com",
        "ftp://shop.example.com",
        "https://shop.example.com/path",
        "https://shop.example.com?q=1",
        "https://user@shop.example.com",
        "https://shop.example.com:99999",
        "*",
    ],
)
def test_source_create_refuses_what_is_not_an_origin(workspace: Any, origin: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.source_create(workspace=workspace, name="Web", allowed_origins=[origin])
    assert caught.value.code == "invalid_origin"
    assert Source.objects.count() == 0


def test_source_names_are_unique_per_workspace(workspace: Any, other_workspace: Any) -> None:
    services.source_create(workspace=workspace, name="Web")
    services.source_create(workspace=other_workspace, name="Web")
    with pytest.raises(Conflict) as caught:
        services.source_create(workspace=workspace, name="Web")
    assert caught.value.code == "source_exists"
    assert Source.objects.filter(workspace=workspace).count() == 1


def test_source_create_refuses_unknown_kinds(workspace: Any) -> None:
    with pytest.raises(InvalidInput):
        services.source_create(workspace=workspace, name="Web", kind="fax")


def test_source_set_enabled(workspace: Any) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    services.source_set_enabled(source=source, enabled=False)
    source.refresh_from_db()
    assert source.enabled is False


def test_source_get_by_write_key(workspace: Any) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    found = selectors.source_get_by_write_key(write_key=source.write_key)
    assert found == source
    assert found is not None and found.workspace == workspace
    assert selectors.source_get_by_write_key(write_key="nope") is None
    assert selectors.source_get_by_write_key(write_key="") is None


def test_allowed_origins_of_enabled_sources(workspace: Any, other_workspace: Any) -> None:
    services.source_create(workspace=workspace, name="A", allowed_origins=["https://a.example.com"])
    off = services.source_create(
        workspace=other_workspace, name="B", allowed_origins=["https://b.example.com"]
    )
    services.source_set_enabled(source=off, enabled=False)
    assert selectors.source_allowed_origins_enabled() == frozenset({"https://a.example.com"})


# --- the command ------------------------------------------------------------------------------


def test_create_source_command_prints_the_write_key(workspace: Any) -> None:
    # given
    out, err = StringIO(), StringIO()
    # when
    call_command(
        "create_source",
        "--workspace",
        "acme",
        "--name",
        "Shop website",
        "--kind",
        "website",
        "--origin",
        "https://shop.example.com",
        "--origin",
        "https://www.example.com",
        stdout=out,
        stderr=err,
    )
    # then
    source = Source.objects.get(workspace=workspace, name="Shop website")
    assert out.getvalue().strip() == source.write_key
    assert source.allowed_origins == ["https://shop.example.com", "https://www.example.com"]
    assert source.kind == "website"


def test_create_source_command_sets_kind_and_rate_limit(workspace: Any) -> None:
    call_command(
        "create_source",
        "--workspace=acme",
        "--name=Backend",
        "--kind=server",
        "--rate-limit=60",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    source = Source.objects.get(name="Backend")
    assert (source.kind, source.rate_limit_per_minute, source.allowed_origins) == (
        "server",
        60,
        [],
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--workspace=nope", "--name=Web"],
        ["--workspace=acme", "--name=Web", "--origin=not an origin"],
        ["--workspace=acme", "--name=Web", "--kind=fax"],
        ["--workspace=acme", "--name=Web", "--rate-limit=-1"],
    ],
)
def test_create_source_command_errors(workspace: Any, args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("create_source", *args, stdout=StringIO(), stderr=StringIO())
    assert Source.objects.count() == 0
