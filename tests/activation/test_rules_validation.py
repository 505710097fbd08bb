"""Invalid rules are refused with the JSON pointer of the bad part and a message."""

from __future__ import annotations

from typing import Any

import pytest

from activation import selectors, services
from activation.enums import ComputedTraitKind
from activation.exceptions import (
    AudienceInvalid,
    AudienceKeyTaken,
    LifecycleStageInvalid,
    RuleError,
)
from activation.models import Audience, ComputedTrait, LifecycleStage
from activation.rules import schema
from profiles.enums import TraitClass
from tests.activation.rule_helpers import classify

pytestmark = pytest.mark.django_db

VIP = {"trait": {"key": "plan", "op": "=", "value": "vip"}}


def refused(workspace: Any, rules: Any) -> RuleError:
    with pytest.raises(RuleError) as caught:
        selectors.audience_rules_validate(workspace=workspace, rules=rules)
    return caught.value


@pytest.mark.parametrize(
    ("rules", "path", "message"),
    [
        ([], "/", "[] is not of type 'object'"),
        ({"all": []}, "/all", "[] should be non-empty"),
        ({"any": [{"whatever": 1}]}, "/any/0", "'whatever' was unexpected"),
        (
            {"all": [VIP, {"trait": {"key": "plan", "op": "="}}]},
            "/all/1/trait",
            "'value' is a required property",
        ),
        (
            {"trait": {"key": "plan", "op": "exists", "value": 1}},
            "/trait",
            "this operator takes no value",
        ),
        ({"trait": {"key": "plan", "op": "like", "value": 1}}, "/trait/op", "'like' is not one of"),
        (
            {"trait": {"key": "plan", "op": "in", "value": "vip"}},
            "/trait/value",
            "is not of type 'array'",
        ),
        (
            {"trait": {"key": "plan", "op": "=", "value": "vip", "extra": 1}},
            "/trait",
            "'extra' was unexpected",
        ),
        (
            {
                "all": [
                    VIP,
                    {"event": {"name": "Order Completed", "count": {"op": ">", "value": 3}}},
                ]
            },
            "/all/1/event/count/op",
            "'>' is not one of ['>=', '<=', '=']",
        ),
        (
            {
                "event": {
                    "name": "x",
                    "within_last_days": 7,
                    "between": {"from": "2026-01-01", "to": "2026-02-01"},
                }
            },
            "/event",
            "within_last_days and between cannot be used together",
        ),
        (
            {"event": {"name": "x", "within_last_days": 0}},
            "/event/within_last_days",
            "less than the minimum of 1",
        ),
        (
            {"event": {"name": "x", "between": {"from": "2026-13-01", "to": "2026-02-01"}}},
            "/event/between/from",
            "not an ISO 8601 date",
        ),
        (
            {"event": {"name": "x", "between": {"from": "2026-03-01", "to": "2026-02-01"}}},
            "/event/between",
            "from is after to",
        ),
        (
            {"event": {"name": "x", "between": {"from": "yesterday", "to": "2026-02-01"}}},
            "/event/between/from",
            "does not match",
        ),
        (
            {"sequence": {"first": {"name": "a"}, "then": {"name": "b"}, "within": {"hours": 0}}},
            "/sequence/within",
            "longer than zero",
        ),
        (
            {"sequence": {"first": {"name": "a"}, "then": {"name": "b"}}},
            "/sequence",
            "'within' is a required property",
        ),
        (
            {"profile": {"field": "last_seen_at", "op": "<", "value": 5}},
            "/profile/value",
            "compares with a date",
        ),
        (  # the end of the last day is past the last date Python holds
            {"profile": {"field": "last_seen_at", "op": "<=", "value": "9999-12-31"}},
            "/profile/value",
            "out of the range of dates",
        ),
        (  # in UTC it is in the year 10000
            {"profile": {"field": "last_seen_at", "op": ">", "value": "9999-12-31T23:00:00-14:00"}},
            "/profile/value",
            "out of the range of dates",
        ),
        (
            {"event": {"name": "x", "between": {"from": "2026-01-01", "to": "9999-12-31"}}},
            "/event/between/to",
            "out of the range of dates",
        ),
    ],
)
def test_schema_and_structure_errors_name_the_bad_part(
    workspace: Any, rules: Any, path: str, message: str
) -> None:
    # when
    error = refused(workspace, rules)

    # then
    assert error.path == path
    assert message in error.message
    assert error.code == "invalid_rules"
    assert error.extra == {"path": path}


def test_personal_data_traits_are_refused(workspace: Any) -> None:
    # given: email is personal data by default; "shoe_size" has never been classified
    classify(workspace, "shoe_size", classification=TraitClass.UNCLASSIFIED)

    # when
    email = refused(workspace, {"all": [VIP, {"trait": {"key": "email", "op": "exists"}}]})
    unclassified = refused(workspace, {"trait": {"key": "shoe_size", "op": ">", "value": 40}})

    # then
    assert email.path == "/all/1/trait/key"
    assert "'email' is not classified as a plain attribute" in email.message
    assert unclassified.path == "/trait/key"


def test_sealed_event_properties_are_refused(workspace: Any) -> None:
    # when
    where = refused(
        workspace,
        {"event": {"name": "Order Completed", "where": [{"property": "email", "op": "exists"}]}},
    )
    aggregate = refused(
        workspace,
        {
            "event": {
                "name": "Order Completed",
                "aggregate": {"fn": "sum", "property": "phone", "op": ">", "value": 1},
            }
        },
    )

    # then
    assert where.path == "/event/where/0/property"
    assert "personal data" in where.message
    assert aggregate.path == "/event/aggregate/property"


def test_unknown_references_are_refused(workspace: Any) -> None:
    # given
    ComputedTrait.objects.create(
        workspace=workspace, key="orders", name="Orders", kind=ComputedTraitKind.COUNT
    )
    ComputedTrait.objects.create(
        workspace=workspace, key="off", name="Off", kind=ComputedTraitKind.COUNT, enabled=False
    )

    # when / then
    error = refused(workspace, {"computed": {"key": "nope", "op": ">", "value": 1}})
    assert (error.path, error.message) == (
        "/computed/key",
        "no computed trait 'nope' in this workspace",
    )
    error = refused(workspace, {"computed": {"key": "off", "op": ">", "value": 1}})
    assert (error.path, error.message) == ("/computed/key", "computed trait 'off' is disabled")
    error = refused(workspace, {"computed": {"key": "orders", "op": ">", "value": "many"}})
    assert error.path == "/computed/value"
    error = refused(
        workspace, {"computed": {"key": "orders", "op": "within_last_days", "value": 3}}
    )
    assert error.path == "/computed/op"
    error = refused(workspace, {"all": [VIP, {"lifecycle": "whale"}]})
    assert (error.path, error.message) == (
        "/all/1/lifecycle",
        "no lifecycle stage 'whale' in this workspace",
    )
    error = refused(workspace, {"not": {"in_audience": "ghosts"}})
    assert (error.path, error.message) == (
        "/not/in_audience",
        "no audience 'ghosts' in this workspace",
    )


def test_references_to_other_workspaces_are_unknown(workspace: Any, other_workspace: Any) -> None:
    # given
    services.audience_create(workspace=other_workspace, key="theirs", name="Theirs", rules=VIP)

    # when
    error = refused(workspace, {"in_audience": "theirs"})

    # then
    assert error.path == "/in_audience"


def test_audience_cycles_are_refused(workspace: Any) -> None:
    # given
    b = services.audience_create(workspace=workspace, key="b", name="B", rules=VIP)
    services.audience_create(workspace=workspace, key="a", name="A", rules={"in_audience": "b"})

    # when
    with pytest.raises(RuleError) as caught:
        services.audience_update(audience=b, rules={"all": [VIP, {"in_audience": "a"}]})

    # then
    assert caught.value.path == "/all/1/in_audience"
    assert caught.value.message == "audience 'b' refers back to itself (b → a → b)"
    b.refresh_from_db()
    assert b.rules == VIP


def test_an_audience_cannot_refer_to_itself(workspace: Any) -> None:
    # given
    audience = services.audience_create(workspace=workspace, key="self", name="Self", rules=VIP)

    # when
    with pytest.raises(RuleError) as caught:
        services.audience_update(audience=audience, rules={"any": [VIP, {"in_audience": "self"}]})

    # then
    assert caught.value.path == "/any/1/in_audience"
    assert "refers back to itself" in caught.value.message


def test_lifecycle_cycles_are_refused(workspace: Any) -> None:
    # given: the default churn_risk stage refers to inactive
    inactive = LifecycleStage.objects.get(workspace=workspace, key="inactive")

    # when
    with pytest.raises(RuleError) as caught:
        services.lifecycle_stage_update(stage=inactive, rules={"not": {"lifecycle": "churn_risk"}})

    # then
    assert caught.value.path == "/not/lifecycle"
    assert caught.value.message == (
        "lifecycle stage 'inactive' refers back to itself (inactive → churn_risk → inactive)"
    )


def test_a_broken_referenced_stage_is_reported_at_the_reference(workspace: Any) -> None:
    # given: a stage whose stored rules no longer hold (a trait reclassified as personal data)
    classify(workspace, "plan", classification=TraitClass.PII)
    LifecycleStage.objects.create(workspace=workspace, key="vips", name="VIPs", rules=VIP)

    # when
    error = refused(workspace, {"lifecycle": "vips"})

    # then
    assert error.path == "/lifecycle"
    assert error.message.startswith(
        "the rules of lifecycle stage 'vips' are not valid (/trait/key:"
    )


def test_audience_create_checks_key_and_rules_and_changes_nothing_when_refused(
    workspace: Any,
) -> None:
    # given
    services.audience_create(workspace=workspace, key="vips", name="VIPs", rules=VIP)

    # when / then
    with pytest.raises(AudienceKeyTaken):
        services.audience_create(workspace=workspace, key="vips", name="Again", rules=VIP)
    with pytest.raises(AudienceInvalid):
        services.audience_create(workspace=workspace, key="bad key!", name="Bad", rules=VIP)
    with pytest.raises(RuleError):
        services.audience_create(
            workspace=workspace,
            key="pii",
            name="PII",
            rules={"trait": {"key": "email", "op": "exists"}},
        )
    assert list(Audience.objects.filter(workspace=workspace).values_list("key", flat=True)) == [
        "vips"
    ]


def test_the_schema_is_published_and_valid() -> None:
    # when
    published = selectors.audience_rules_schema()

    # then
    assert published is schema()
    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(published["$defs"]["condition"]["properties"]) == {
        "all", "any", "not", "trait", "computed", "profile", "event", "sequence", "lifecycle",
        "in_audience",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"key": "no spaces"}, "key"),
        ({"key": "vip\n"}, "key"),  # `$` matches before a final newline: the whole key counts
        ({"key": None}, "key"),
        ({"key": "ok", "name": "n" * 201}, "name"),
        ({"key": "ok", "description": "d" * 2001}, "description"),
        ({"key": "ok", "description": None}, "description"),
    ],
)
def test_an_audience_field_that_does_not_fit_is_named(
    workspace: Any, fields: dict[str, Any], field: str
) -> None:
    # when: as the admin or a command would call it (the API checks lengths itself)
    with pytest.raises(AudienceInvalid) as caught:
        services.audience_create(workspace=workspace, **{"name": "N", "rules": VIP, **fields})
    # then
    assert (caught.value.code, caught.value.field) == ("invalid_audience", field)
    assert not Audience.objects.filter(workspace=workspace).exists()


def test_a_lifecycle_stage_key_or_unknown_field_is_named(workspace: Any) -> None:
    # when
    with pytest.raises(LifecycleStageInvalid) as bad_key:
        services.lifecycle_stage_create(workspace=workspace, key="no spaces", name="N", rules=VIP)
    with pytest.raises(LifecycleStageInvalid):  # a newline once passed a "$"-anchored pattern
        services.lifecycle_stage_create(workspace=workspace, key="stage\n", name="N", rules=VIP)
    stage = LifecycleStage.objects.get(workspace=workspace, key="inactive")
    with pytest.raises(LifecycleStageInvalid) as bad_field:
        services.lifecycle_stage_update(stage=stage, key="renamed")
    # then
    assert (bad_key.value.code, bad_key.value.field) == ("invalid_lifecycle_stage", "key")
    assert bad_field.value.field == "key"
