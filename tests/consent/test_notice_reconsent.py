"""A new notice version asks again: publishing it flags for re-consent the current grants of
the purposes it covers that were given under an earlier version of the notice
(`services.notice_version_publish` -> `consent_states_reconsent_flag`), with an audit entry
each; the grant stands at the gate until the person answers, and their next decision clears
the flag."""

from __future__ import annotations

import base64
import json
from io import StringIO
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from consent import selectors, services
from consent.enums import Decision, Method
from consent.models import ConsentState, Notice, NoticeVersion
from consent.services import Evidence, Subject
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from tests.profiles.ingest_helpers import msg

LogEntry = get_logentry_model()
NEW_TEXT = "Acme Store now also shares analytics with a new partner. Choose what you accept."


@pytest.fixture
def source(workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=workspace)
    return profile_services.source_create(workspace=workspace, name="Web")


@pytest.fixture
def banner(source: Any) -> APIClient:
    client = APIClient()
    auth = base64.b64encode(f"{source.write_key}:".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {auth}")
    return client


def submit(
    client: APIClient, anonymous_id: str, notice_version: int | None, **decisions: str
) -> Any:
    body: dict[str, Any] = {"anonymousId": anonymous_id, "decisions": decisions}
    if notice_version is not None:
        body["noticeVersion"] = notice_version
    response = client.post("/v1/consent", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def flags(workspace: Any) -> dict[tuple[str, str], tuple[str, bool]]:
    """(profile id, purpose key) -> (decision, needs re-consent), for the workspace."""
    return {
        (str(profile_id), key): (decision, reconsent)
        for profile_id, key, decision, reconsent in ConsentState.objects.filter(
            workspace=workspace
        ).values_list("profile_id", "purpose__key", "decision", "needs_reconsent")
    }


def profile_of(workspace: Any, anonymous_id: str) -> str:
    profile = profile_selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="anonymous_id", value=anonymous_id
    )
    assert profile is not None
    return str(profile.pk)


def banner_notice(workspace: Any) -> Notice:
    return Notice.objects.get(workspace=workspace, key="banner")


def test_publishing_a_version_flags_the_grants_given_under_an_earlier_one(
    banner: APIClient, source: Any, other_workspace: Any
) -> None:
    # given: under v1, ann granted analytics and marketing email and denied profiling; bob
    # granted analytics without citing a notice version; carl granted analytics under another
    # notice; and a grant in another workspace
    workspace = source.workspace
    submit(banner, "ann", 1, analytics="granted", marketing_email="granted", profiling="denied")
    submit(banner, "bob", None, analytics="granted")
    other_notice = Notice.objects.create(workspace=workspace, key="newsletter", title="Newsletter")
    newsletter_v1 = services.notice_version_publish(
        notice=other_notice, text="Our newsletter.", purposes=["analytics"]
    ).version
    carl = profile_services.ingest_messages(
        source=source, messages=[msg(anonymous_id="carl")]
    ).profile_ids[0]
    services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "carl", carl),
        decisions={"analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.API, notice_version=newsletter_v1),
    )
    services.purposes_ensure_defaults(workspace=other_workspace)
    other_source = profile_services.source_create(workspace=other_workspace, name="Web")
    other_v1 = NoticeVersion.objects.get(notice__workspace=other_workspace, version=1)
    dora = profile_services.ingest_messages(
        source=other_source, messages=[msg(anonymous_id="dora")]
    ).profile_ids[0]
    services.consent_record(
        workspace=other_workspace,
        subject=Subject("anonymous_id", "dora", dora),
        decisions={"analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.API, notice_version=other_v1),
    )
    ann, bob = profile_of(workspace, "ann"), profile_of(workspace, "bob")
    before_other = flags(other_workspace)
    kind = ContentType.objects.get_for_model(ConsentState)
    audit_before = LogEntry.objects.filter(content_type=kind).count()

    # when: v2 of the banner covers analytics and profiling, not marketing email
    published = services.notice_version_publish(
        notice=banner_notice(workspace), text=NEW_TEXT, purposes=["analytics", "profiling"]
    )

    # then: only ann's analytics grant, given under v1, is asked again
    assert (published.version.version, published.reconsent_flagged) == (2, 1)
    assert flags(workspace) == {
        (ann, "analytics"): ("granted", True),
        (ann, "marketing_email"): ("granted", False),
        (ann, "profiling"): ("denied", False),
        (bob, "analytics"): ("granted", False),
        (str(carl), "analytics"): ("granted", False),
    }
    assert flags(other_workspace) == before_other
    # ...with an audit entry for the flag
    entries = list(LogEntry.objects.filter(content_type=kind).order_by("pk"))[audit_before:]
    assert [(e.action, e.changes_dict) for e in entries] == [
        (LogEntry.Action.UPDATE, {"needs_reconsent": ["False", "True"]})
    ]
    state = ConsentState.objects.get(profile_id=ann, purpose__key="analytics")
    assert entries[0].object_pk == str(state.pk)
    # ...and the consent API and banner are told to ask again
    answer = banner.get("/v1/consent", {"anonymousId": "ann"}).json()
    assert answer["needsReconsent"] == ["analytics"]


def test_the_grant_flagged_for_reconsent_still_passes_the_gate_until_the_person_answers(
    banner: APIClient, source: Any
) -> None:
    # given: a grant under v1, flagged by v2
    workspace = source.workspace
    submit(banner, "ann", 1, analytics="granted")
    ann = profile_of(workspace, "ann")
    services.notice_version_publish(
        notice=banner_notice(workspace), text=NEW_TEXT, purposes=["analytics"]
    )
    analytics = selectors.purpose_get(workspace=workspace, key="analytics")
    assert analytics is not None
    state = ConsentState.objects.get(profile_id=ann, purpose=analytics)
    # when
    allowed = selectors.consent_allows(workspace=workspace, profile_id=ann, purpose=analytics)
    basis = selectors.consent_gate_basis(workspace=workspace, purpose=analytics, profile_ids=[ann])
    # then: the gate reads the decision, as for any state flagged for re-consent
    assert state.needs_reconsent is True
    assert allowed is True
    assert {str(k): v for k, v in basis.items()} == {ann: str(state.record_id)}


@pytest.mark.parametrize(
    ("decision", "expected"), [("granted", "granted"), ("denied", "withdrawn")]
)
def test_the_persons_answer_under_the_new_version_clears_the_flag(
    banner: APIClient, source: Any, decision: str, expected: str
) -> None:
    # given: a grant under v1, flagged by v2
    workspace = source.workspace
    submit(banner, "ann", 1, analytics="granted")
    services.notice_version_publish(
        notice=banner_notice(workspace), text=NEW_TEXT, purposes=["analytics"]
    )
    ann = profile_of(workspace, "ann")
    assert flags(workspace) == {(ann, "analytics"): ("granted", True)}
    # when
    answer = submit(banner, "ann", 2, analytics=decision)
    # then
    assert (answer["state"], answer["needsReconsent"]) == ({"analytics": expected}, [])
    assert flags(workspace) == {(ann, "analytics"): (expected, False)}


def test_a_grant_citing_a_superseded_version_is_flagged_when_recorded(
    banner: APIClient, source: Any
) -> None:
    # given: v2 published, and a banner still showing v1 (a cached text)
    workspace = source.workspace
    services.notice_version_publish(
        notice=banner_notice(workspace), text=NEW_TEXT, purposes=["analytics"]
    )
    # when
    answer = submit(banner, "eve", 1, analytics="granted", profiling="granted")
    # then: the purpose v2 covers is asked again at once; the other is not
    assert answer["needsReconsent"] == ["analytics"]
    eve = profile_of(workspace, "eve")
    assert flags(workspace) == {
        (eve, "analytics"): ("granted", True),
        (eve, "profiling"): ("granted", False),
    }


def test_publishing_a_first_version_flags_nothing(source: Any, banner: APIClient) -> None:
    # given
    submit(banner, "ann", 1, analytics="granted")
    notice = Notice.objects.create(workspace=source.workspace, key="email", title="Email")
    # when
    published = services.notice_version_publish(
        notice=notice, text="About our emails.", purposes=["analytics"]
    )
    # then
    assert (published.version.version, published.reconsent_flagged) == (1, 0)
    assert not ConsentState.objects.filter(needs_reconsent=True).exists()


def test_the_admin_publish_flags_the_grants_and_the_entry_names_the_steward(
    owner: Any, banner: APIClient, source: Any
) -> None:
    # given
    workspace = source.workspace
    submit(banner, "ann", 1, analytics="granted")
    notice = banner_notice(workspace)
    client = Client()
    client.force_login(owner)
    kind = ContentType.objects.get_for_model(ConsentState)
    audit_before = LogEntry.objects.filter(content_type=kind).count()
    # when
    response = client.post(
        reverse("admin:consent_notice_publish", args=[notice.pk]),
        {"text": NEW_TEXT, "language": "en", "purposes": ["analytics"], "policy_url": ""},
        follow=True,
    )
    # then
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1
    assert messages[0].endswith(
        "1 consent grant(s) given under an earlier version flagged for re-consent."
    )
    state = ConsentState.objects.get(profile_id=profile_of(workspace, "ann"))
    assert state.needs_reconsent is True
    [entry] = list(LogEntry.objects.filter(content_type=kind).order_by("pk"))[audit_before:]
    assert (entry.object_pk, entry.actor_id) == (str(state.pk), owner.pk)


def test_a_cached_consent_answer_is_stale_once_a_version_flags_it(
    settings: Any, banner: APIClient, source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the answer cached
    settings.CDP_CONSENT_CACHE_SECONDS = 60
    submit(banner, "ann", 1, analytics="granted")
    assert banner.get("/v1/consent", {"anonymousId": "ann"}).json()["needsReconsent"] == []
    # when
    with django_capture_on_commit_callbacks(execute=True):
        services.notice_version_publish(
            notice=banner_notice(source.workspace), text=NEW_TEXT, purposes=["analytics"]
        )
    # then
    assert banner.get("/v1/consent", {"anonymousId": "ann"}).json()["needsReconsent"] == [
        "analytics"
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_publishing_holds_the_ledger_locks_of_one_batch_at_a_time(
    banner: APIClient, source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version over a whole workspace's grants must not hold one lock per granting profile
    until it ends (PostgreSQL's lock table holds some thousands): each batch commits, and its
    locks go with it."""
    for name in ("ann", "bob", "carl", "dora", "eve"):
        submit(banner, name, 1, analytics="granted")
    monkeypatch.setattr(services, "RECONSENT_BATCH_SIZE", 2)
    held: list[int] = []
    lock_profiles = services._lock_profiles

    def counting(profile_ids: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()"
            )
            held.append(cursor.fetchone()[0])
        lock_profiles(profile_ids)

    monkeypatch.setattr(services, "_lock_profiles", counting)

    published = services.notice_version_publish(
        notice=banner_notice(source.workspace), text=NEW_TEXT, purposes=["analytics"]
    )

    assert published.reconsent_flagged == 5
    assert held == [0, 0, 0]  # none left from the batch before


def test_the_command_completes_an_interrupted_flagging(
    banner: APIClient, source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing flags a batch per transaction after the version commits; a publish stopped
    halfway (a request killed by its timeout) is completed by `flag_reconsent`."""
    workspace = source.workspace
    for name in ("ann", "bob", "carl"):
        submit(banner, name, 1, analytics="granted")
    monkeypatch.setattr(services, "RECONSENT_BATCH_SIZE", 2)
    calls = 0
    batch = services._reconsent_flag_batch

    def interrupted(found: Any, rows: Any) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise TimeoutError("the request was killed")
        return batch(found, rows)

    monkeypatch.setattr(services, "_reconsent_flag_batch", interrupted)
    with pytest.raises(TimeoutError):
        services.notice_version_publish(
            notice=banner_notice(workspace), text=NEW_TEXT, purposes=["analytics"]
        )
    monkeypatch.setattr(services, "_reconsent_flag_batch", batch)
    assert sorted(reconsent for _d, reconsent in flags(workspace).values()) == [
        False,
        True,
        True,
    ]

    out = StringIO()
    call_command("flag_reconsent", "--workspace", workspace.slug, "--notice", "banner", stdout=out)

    assert out.getvalue().strip() == "banner v2: 1 grant(s) flagged for re-consent"
    assert all(reconsent for _d, reconsent in flags(workspace).values())


def test_the_command_names_an_unknown_notice_version(source: Any) -> None:
    with pytest.raises(CommandError, match="No such notice version"):
        call_command(
            "flag_reconsent", "--workspace", source.workspace.slug, "--notice", "banner",
            "--notice-version", "9",
        )  # fmt: skip
