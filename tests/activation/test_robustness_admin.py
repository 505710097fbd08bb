"""Bad JSON sent to the activation admin: the audience builder's preview (which reads the
request body itself) and the JSON fields of the admin's forms answer a clear error and store
nothing, where the standard library's reader recursed (RecursionError) or took NaN, 1e400, NUL
and lone surrogates that PostgreSQL then refused (a 500)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from activation.models import Audience, Destination
from consent import services as consent_services
from tests.activation.api_helpers import VIP, shopper

pytestmark = pytest.mark.django_db

PREVIEW = "admin:activation_audience_preview"
DEEP = "[" * 100_000 + "]" * 100_000
BIG = "123456789012345678901234567890"
# Rules (or a whole body) as raw JSON text, each with the error it answers.
BAD_VALUES = [
    pytest.param("NaN", "JSON parse error - unexpected character", id="nan"),
    pytest.param("Infinity", "JSON parse error - unexpected character", id="infinity"),
    pytest.param("1e400", "JSON parse error - number is infinity", id="out-of-range"),
    pytest.param(BIG, "JSON parse error - an integer is beyond 64 bits", id="big-integer"),
    pytest.param('"a\\u0000b"', "Text in the request body cannot contain the NUL", id="nul"),
    pytest.param('"\\ud800"', "JSON parse error - no low surrogate", id="lone-surrogate"),
]


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rules_with(value: str) -> str:
    return '{"trait": {"key": "plan", "op": "=", "value": ' + value + "}}"


@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
def test_the_preview_refuses_json_the_database_cannot_take(
    owner: Any, workspace: Any, value: str, message: str
) -> None:
    # given
    shopper(workspace)
    body = f'{{"workspace": {workspace.pk}, "rules": {rules_with(value)}}}'

    # when
    response = client_for(owner).post(reverse(PREVIEW), body, content_type="application/json")

    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["path"] == "/"
    assert error["message"].startswith(message)


def test_the_preview_refuses_deep_nesting(owner: Any, workspace: Any) -> None:
    # when
    response = client_for(owner).post(reverse(PREVIEW), DEEP, content_type="application/json")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("JSON parse error - depth limit exceeded")


def test_the_preview_still_counts_valid_rules(owner: Any, workspace: Any) -> None:
    # given
    shopper(workspace)
    body = json.dumps({"workspace": workspace.pk, "rules": VIP})

    # when
    response = client_for(owner).post(reverse(PREVIEW), body, content_type="application/json")

    # then
    assert response.status_code == 200
    assert response.json()["count"] == 1


def audience_form(workspace: Any, rules: str) -> dict[str, Any]:
    return {
        "workspace": workspace.pk,
        "key": "buyers",
        "name": "Buyers",
        "description": "",
        "rules": rules,
        "status": "active",
        "_save": "Save",
    }


@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
def test_the_audience_form_refuses_json_the_database_cannot_take(
    owner: Any, workspace: Any, value: str, message: str
) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:activation_audience_add"), audience_form(workspace, rules_with(value))
    )

    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["rules"]
    assert errors[0].startswith(message)
    assert not Audience.objects.exists()


def test_the_audience_form_refuses_deep_nesting_and_shows_it_again(
    owner: Any, workspace: Any
) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:activation_audience_add"), audience_form(workspace, DEEP)
    )

    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["rules"]
    assert errors[0].startswith("JSON parse error - depth limit exceeded")
    assert not Audience.objects.exists()


def test_every_json_field_of_the_admin_reads_the_same_way(
    owner: Any, workspace: Any, settings: Any
) -> None:
    # given: a destination's config is a plain model JSONField on the form
    consent_services.purposes_ensure_defaults(workspace=workspace)
    settings.CDP_WEBHOOK_ALLOW_PRIVATE = True
    form = {
        "workspace": workspace.pk,
        "name": "CRM hook",
        "kind": "webhook",
        "purpose_keys": ["marketing_email"],
        "data": json.dumps({"identifiers": ["user_id"]}),
        "config": '{"url": "https://127.0.0.1:8443/cdp", "retries": ' + DEEP + "}",
        "new_secret": "whsec_robustness_0123456789",
        "min_audience_size": 100,
        "enabled": "on",
        "_save": "Save",
    }

    # when
    response = client_for(owner).post(reverse("admin:activation_destination_add"), form)

    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["config"]
    assert errors[0].startswith("JSON parse error - depth limit exceeded")
    assert not Destination.objects.exists()
