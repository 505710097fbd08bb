"""Match settings of the wrong shape are refused with a message naming the setting, in the
service and in the admin form, never a server error."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from matching import engine, services
from matching.exceptions import MatchSettingsInvalid

BASE: dict[str, Any] = {
    "blocking": [{"keys": ["x"]}],
    "name_swap": [],
    "max_block_size": 1000,
    "u_sample_pairs": 300_000,
    "review_threshold": 0.5,
    "auto_merge_threshold": None,
    "parameters_mode": "estimated",
    "parameters": {},
}


def field(**changes: Any) -> list[dict[str, Any]]:
    return [{"name": "x", "source": "trait", "key": "x", "comparator": "levenshtein", **changes}]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (field(comparator=["exact"]), "fields[0].comparator"),
        (field(comparator={"exact": 1}), "fields[0].comparator"),
        (field(thresholds=[float("nan")]), "fields[0].thresholds"),
        (field(thresholds=[1, float("inf")]), "fields[0].thresholds"),
        (field(thresholds=[10**400]), "fields[0].thresholds"),
    ],
)
def test_a_malformed_field_is_refused_by_name(fields: Any, named: str) -> None:
    with pytest.raises(MatchSettingsInvalid) as refused:
        services.match_settings_validate(fields=fields, **BASE)

    assert refused.value.message.startswith(named)


def test_the_admin_form_refuses_a_comparator_that_is_not_a_name(owner: Any, workspace: Any) -> None:
    # given
    settings = services.match_settings_ensure(workspace=workspace)
    client = Client()
    client.force_login(owner)
    page = reverse("admin:matching_matchsettings_change", args=[settings.pk])

    # when
    response = client.post(
        page,
        {
            "review_threshold": "0.6",
            "auto_merge_threshold": "",
            "fields": '[{"name": "x", "source": "trait", "key": "x", "comparator": []}]',
            "blocking": '[{"keys": ["x"]}]',
            "name_swap": "[]",
            "max_block_size": "1000",
            "u_sample_pairs": "300000",
            "parameters_mode": "estimated",
            "parameters": "{}",
        },
    )

    # then
    assert response.status_code == 200
    assert b"fields[0].comparator" in response.content
    settings.refresh_from_db()
    assert settings.review_threshold == 0.5


def _manual(config_fields: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    """Hand-set parameters that fit `config_fields`, with `changes` applied to the prior or
    to the first field's m."""
    config = engine.parse_config(fields=config_fields, blocking=BASE["blocking"])
    fields = {
        c.name: {"m": [1.0 / c.size] * c.size, "u": [1.0 / c.size] * c.size} for c in config.model()
    }
    first = next(iter(fields.values()))
    if "m" in changes:
        first["m"] = [changes["m"], *first["m"][1:]]
    return {"prior": changes.get("prior", 0.01), "fields": fields}


@pytest.mark.parametrize(
    "changes",
    [{"prior": 10**400}, {"m": float("nan")}, {"m": float("inf")}, {"m": 10**400}],
)
def test_hand_set_parameters_that_are_not_finite_numbers_are_refused(changes: Any) -> None:
    fields = field()
    assert services.match_settings_validate(
        fields=fields, **{**BASE, "parameters_mode": "manual", "parameters": _manual(fields)}
    )

    with pytest.raises(MatchSettingsInvalid) as refused:
        services.match_settings_validate(
            fields=fields,
            **{**BASE, "parameters_mode": "manual", "parameters": _manual(fields, **changes)},
        )

    assert refused.value.message.startswith("parameters")
