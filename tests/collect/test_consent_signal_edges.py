"""Edges of the consent signals on collected events: a Sec-GPC header a proxy passed on twice
("1, 1") still counts, and an event whose client clock runs ahead of ours does not outrank a
change recorded after it was received."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework.test import APIClient

from cdp.core.api.headers import sec_gpc
from collect.consent_signals import consent_signals_apply
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentRecord, ConsentState
from consent.services import Evidence, Subject
from profiles import services as profile_services
from tests.profiles.ingest_helpers import msg

PREFERENCES = {"consent": {"categoryPreferences": {"Advertising": True}}}


def test_a_gpc_header_sent_twice_counts() -> None:
    assert sec_gpc({"Sec-GPC": "1, 1"})
    assert sec_gpc({"Sec-GPC": " 1"})
    assert not sec_gpc({"Sec-GPC": "0"})
    assert not sec_gpc({"Sec-GPC": "10"})
    assert not sec_gpc({})


def test_the_collection_api_records_a_doubled_gpc_header(sdk: APIClient, source: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=source.workspace)
    body = {"batch": [{"type": "track", "event": "Viewed", "anonymousId": "anon-g"}]}
    # when
    response = sdk.post(
        "/v1/batch", json.dumps(body), content_type="application/json", HTTP_SEC_GPC="1, 1"
    )
    # then
    assert response.status_code == 200
    assert ConsentRecord.objects.filter(
        workspace=source.workspace, method=Method.GPC, decision=Decision.DENIED
    ).exists()


def test_an_event_dated_in_the_future_does_not_overturn_a_later_refusal(source: Any) -> None:
    # given: an event received a minute ago, dated an hour ahead by its client's clock, and a
    # refusal recorded since
    workspace = source.workspace
    consent_services.purposes_ensure_defaults(workspace=workspace)
    received = timezone.now() - timedelta(minutes=1)
    message = dataclasses.replace(
        msg(anonymous_id="anon-f", context=PREFERENCES),
        received_at=received,
        timestamp=received + timedelta(hours=1),
    )
    pid = profile_services.ingest_messages(source=source, messages=[message]).profile_ids[0]
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-f", pid),
        decisions={"advertising": Decision.DENIED},
        evidence=Evidence(method=Method.PREFERENCE_CENTRE),
    )
    # when: the drain applies the event's preferences
    consent_signals_apply(source=source, messages=[message], profile_ids=[pid])
    # then
    state = ConsentState.objects.get(profile_id=pid, purpose__key="advertising")
    assert state.decision == Decision.DENIED


def test_a_banner_refusing_what_was_granted_records_a_withdrawal(source: Any) -> None:
    # given: a grant of advertising
    workspace = source.workspace
    consent_services.purposes_ensure_defaults(workspace=workspace)
    first = msg(anonymous_id="anon-w", context=PREFERENCES)
    pid = profile_services.ingest_messages(source=source, messages=[first]).profile_ids[0]
    consent_signals_apply(source=source, messages=[first], profile_ids=[pid])
    # when: the banner then says no
    later = timezone.now()
    refusal = dataclasses.replace(
        msg(
            anonymous_id="anon-w",
            context={"consent": {"categoryPreferences": {"Advertising": False}}},
        ),
        timestamp=later,
        received_at=later,
    )
    profile_services.ingest_messages(source=source, messages=[refusal])
    consent_signals_apply(source=source, messages=[refusal], profile_ids=[pid])
    # then: the report counts it as a withdrawal
    decisions = list(
        ConsentRecord.objects.filter(purpose__key="advertising")
        .order_by("server_time")
        .values_list("decision", flat=True)
    )
    assert decisions == [Decision.GRANTED, Decision.WITHDRAWN]
