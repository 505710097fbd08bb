"""The consent ledger: append-only, chained per subject, state kept per profile, merges keep
the most restrictive decision, anonymous consent follows the person, and the gate."""

from __future__ import annotations

import base64
import inspect
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import connection

from cdp.core.crypto import blind_index
from consent import selectors, services
from consent.enums import Decision, Method
from consent.models import ConsentRecord, ConsentState
from consent.services import Evidence, Subject
from profiles import services as profile_services
from profiles.models import Profile
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def source(workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=workspace)
    return profile_services.source_create(workspace=workspace, name="Web")


def profile_for(source: Any, **ids: Any) -> Any:
    outcome = profile_services.ingest_messages(source=source, messages=[msg(**ids)])
    return outcome.profile_ids[0]


def decide(workspace: Any, subject: Subject, method: str = Method.BANNER, **decisions: str) -> Any:
    return services.consent_record(
        workspace=workspace,
        subject=subject,
        decisions=decisions,
        evidence=Evidence(method=method, jurisdiction="DE", ip="198.51.100.7"),
    )


def test_services_never_update_or_delete_ledger_rows() -> None:
    # given: every statement of the write services that touches the ledger
    source = inspect.getsource(services)
    touching = [line.strip() for line in source.splitlines() if "ConsentRecord.objects" in line]
    # then: records are created in bulk and read for the chain; nothing updates or deletes
    assert touching == [
        "ConsentRecord.objects.bulk_create(records)",
        # the chain heads, read by consent_record and consent_record_many (which inserts by
        # COPY)
        "ConsentRecord.objects.filter(workspace=workspace, subject_index__in=list(indexes))",
    ]
    writes = [
        line.strip() for line in source.splitlines() if "bulk." in line and "(Consent" in line
    ]
    assert writes[0].startswith("bulk.insert(ConsentRecord, ")  # a plain insert: no ON CONFLICT
    assert ".update(" not in source.split("def _state_set")[0].split("def consent_record")[1]


def test_records_chain_per_subject_and_an_edited_row_is_detected(source: Any) -> None:
    # given
    workspace = source.workspace
    profile_id = profile_for(source, anonymous_id="anon-1")
    subject = Subject("anonymous_id", "anon-1", profile_id)
    decide(workspace, subject, analytics=Decision.GRANTED)
    decide(workspace, subject, analytics=Decision.WITHDRAWN, marketing_email=Decision.DENIED)
    index = blind_index(workspace.pk, "anonymous_id", "anon-1")
    assert (
        selectors.consent_chain_verify(workspace=workspace, subject_index=index).broken_record
        is None
    )
    middle = ConsentRecord.objects.filter(subject_index=index).order_by("server_time", "id")[1]
    # when
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_consentrecord SET decision = 'granted' WHERE id = %s",
            [middle.pk if connection.vendor == "postgresql" else middle.pk.hex],
        )
    # then
    check = selectors.consent_chain_verify(workspace=workspace, subject_index=index)
    assert (check.checked, check.broken_record) == (2, middle.pk)


def test_state_follows_the_latest_decision(source: Any) -> None:
    # given
    profile_id = profile_for(source, anonymous_id="anon-2")
    subject = Subject("anonymous_id", "anon-2", profile_id)
    # when
    decide(source.workspace, subject, analytics=Decision.GRANTED)
    decide(source.workspace, subject, analytics=Decision.WITHDRAWN)
    # then
    state = selectors.consent_state_for_profile(workspace=source.workspace, profile_id=profile_id)
    assert state["analytics"]["decision"] == Decision.WITHDRAWN
    assert ConsentRecord.objects.filter(profile_id=profile_id).count() == 2


def test_merge_of_granted_and_denied_leaves_denied_and_asks_again(source: Any) -> None:
    # given: consent on two devices before the person logs in on both
    phone = profile_for(source, anonymous_id="phone")
    laptop = profile_for(source, anonymous_id="laptop")
    decide(source.workspace, Subject("anonymous_id", "phone", phone), advertising=Decision.GRANTED)
    decide(source.workspace, Subject("anonymous_id", "laptop", laptop), advertising=Decision.DENIED)
    # when
    profile_services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-1", anonymous_id="phone"),
            msg("identify", user_id="u-1", anonymous_id="laptop"),
        ],
    )
    # then
    [survivor] = Profile.objects.filter(status="active")
    state = ConsentState.objects.get(profile=survivor, purpose__key="advertising")
    assert (state.decision, state.needs_reconsent) == (Decision.DENIED, True)
    assert ConsentState.objects.filter(purpose__key="advertising").count() == 1


def test_anonymous_consent_follows_identify_into_the_profile(source: Any) -> None:
    # given: a known customer, and consent given on a new device before login
    customer = profile_for(source, user_id="u-2")
    device = profile_for(source, anonymous_id="new-device")
    decide(
        source.workspace,
        Subject("anonymous_id", "new-device", device),
        marketing_email=Decision.GRANTED,
    )
    # when
    profile_services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-2", anonymous_id="new-device")]
    )
    # then
    state = selectors.consent_state_for_profile(workspace=source.workspace, profile_id=customer)
    assert state["marketing_email"]["decision"] == Decision.GRANTED
    assert state["marketing_email"]["needs_reconsent"] is False


def test_gpc_opts_out_of_sale_and_share_even_over_an_opt_in(source: Any) -> None:
    # given
    profile_id = profile_for(source, anonymous_id="gpc-1")
    subject = Subject("anonymous_id", "gpc-1", profile_id)
    decide(source.workspace, subject, advertising=Decision.GRANTED, analytics=Decision.GRANTED)
    # when
    first = services.consent_apply_gpc(
        workspace=source.workspace, subject=subject, evidence=Evidence(method=Method.GPC)
    )
    again = services.consent_apply_gpc(
        workspace=source.workspace, subject=subject, evidence=Evidence(method=Method.GPC)
    )
    # then
    assert [(r.purpose.key, r.decision, r.method) for r in first.records] == [
        ("advertising", Decision.DENIED, Method.GPC)
    ]
    assert again.records == []
    state = selectors.consent_state_for_profile(workspace=source.workspace, profile_id=profile_id)
    assert state["advertising"] | {"updated_at": None, "record": None} == {
        "decision": Decision.DENIED,
        "needs_reconsent": True,
        "updated_at": None,
        "record": None,
    }
    assert state["analytics"]["decision"] == Decision.GRANTED


def test_the_gate_follows_legal_basis_defaults_restriction_and_time(source: Any) -> None:
    # given
    workspace = source.workspace
    granted = profile_for(source, anonymous_id="g")
    denied = profile_for(source, anonymous_id="d")
    silent = profile_for(source, anonymous_id="s")
    restricted = profile_for(source, anonymous_id="r")
    decide(workspace, Subject("anonymous_id", "g", granted), analytics=Decision.GRANTED)
    decide(workspace, Subject("anonymous_id", "d", denied), analytics=Decision.DENIED)
    decide(workspace, Subject("anonymous_id", "r", restricted), analytics=Decision.GRANTED)
    Profile.objects.filter(pk=restricted).update(restricted=True)
    analytics = selectors.purpose_get(workspace=workspace, key="analytics")
    necessary = selectors.purpose_get(workspace=workspace, key="necessary")
    assert analytics is not None and necessary is not None

    def gate(purpose: Any, jurisdiction: str = "", at: Any = None) -> set[Any]:
        return set(
            selectors.consent_gate_profiles(
                workspace=workspace, purpose=purpose, jurisdiction=jurisdiction, at=at
            ).values_list("pk", flat=True)
        )

    # then: opt-in in the EU, opt-out by default elsewhere, contract needs no consent
    assert gate(analytics, "EU") == {granted}
    assert gate(analytics, "US-CA") == {granted, silent}
    assert gate(necessary) == {granted, denied, silent}
    # and at a moment before any decision, nobody had opted in
    first = ConsentRecord.objects.order_by("server_time").first()
    assert first is not None
    assert gate(analytics, "EU", at=first.server_time.replace(year=2000)) == set()
    assert selectors.consent_allows(workspace=workspace, profile_id=granted, purpose=analytics)


def test_a_receipt_verifies_with_the_published_key_and_fails_after_any_change(
    source: Any,
) -> None:
    # given
    profile_id = profile_for(source, anonymous_id="rcpt")
    result = decide(
        source.workspace,
        Subject("anonymous_id", "rcpt", profile_id),
        analytics=Decision.GRANTED,
        advertising=Decision.DENIED,
    )
    receipt = result.receipt
    [key] = selectors.receipt_public_keys(workspace=source.workspace)
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "="))
    signature = base64.urlsafe_b64decode(receipt.signature + "==")
    body = services.canonical_json(receipt.body)
    # when / then: the receipt verifies as issued
    public.verify(signature, body)
    assert receipt.body["piiPrincipalId"].startswith("anonymous_id:")
    assert "rcpt" not in repr(receipt.body)
    assert [p["purpose"] for p in receipt.body["services"][0]["purposes"]] == [
        "advertising",
        "analytics",
    ]
    # and any changed byte breaks it
    for position in (0, len(body) // 2, len(body) - 1):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        with pytest.raises(Exception, match=""):
            public.verify(signature, bytes(tampered))


@pytest.mark.parametrize(
    ("jurisdiction", "mode"),
    [
        ("EU", "opt_in"),
        ("DE", "opt_in"),
        ("FR", "opt_in"),
        ("GB", "opt_in"),
        ("UK", "opt_in"),
        ("BR", "opt_in"),
        ("US-CA", "opt_out"),
        ("US", "opt_out"),
        ("JP", "opt_out"),
        ("default", "opt_out"),
    ],
)
def test_default_mode_maps_countries_to_their_group(
    source: Any, jurisdiction: str, mode: str
) -> None:
    # given
    analytics = selectors.purpose_get(workspace=source.workspace, key="analytics")
    assert analytics is not None
    # when / then
    assert analytics.default_mode(jurisdiction) == mode
