"""The hosted preference centre: a signed link opens a known person's choices, a POST (with
CSRF) records changes with method preference_centre, and a bad, expired or foreign link shows
a 404 and changes nothing."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from io import StringIO
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.core.management import call_command
from django.test import Client

from cdp.core.crypto import blind_index
from consent import selectors, services
from consent.enums import Decision, Method
from consent.models import ConsentRecord, ConsentState, Receipt
from consent.services import Evidence, Subject
from profiles import services as profile_services
from tests.profiles.ingest_helpers import msg

# WhiteNoise notes that collectstatic has not run; no test here needs static files
pytestmark = pytest.mark.filterwarnings("ignore:No directory at:UserWarning")

BASE_URL = "https://cdp.example.com"
USER_ID = "customer-7"
EMAIL = "ada@example.com"


@pytest.fixture
def profile_id(workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(workspace=workspace, name="Shop")
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id=USER_ID, anonymous_id="anon-7", traits={"email": EMAIL})],
    )
    return outcome.profile_ids[0]


def _path(link: str) -> str:
    return urlsplit(link).path


def _link(workspace: Any, profile_id: Any) -> str:
    return _path(
        services.preference_link_create(
            workspace=workspace, profile_id=profile_id, base_url=BASE_URL
        )
    )


def _csrf_client(path: str) -> tuple[Client, str]:
    """A client that enforces CSRF, and the token the page gave it."""
    client = Client(enforce_csrf_checks=True)
    page = client.get(path)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    return client, token.group(1)


def _ledger() -> list[tuple[str, str, str, str]]:
    return sorted(
        ConsentRecord.objects.values_list("purpose__key", "decision", "method", "subject_type")
    )


def test_the_link_is_signed_for_the_workspace_and_profile(workspace: Any, profile_id: Any) -> None:
    # when
    link = services.preference_link_create(
        workspace=workspace, profile_id=profile_id, base_url=BASE_URL + "/"
    )

    # then: the page's address, with a token naming only the two ids
    assert link.startswith(f"{BASE_URL}/consent/preferences/")
    token = link.removeprefix(f"{BASE_URL}/consent/preferences/").removesuffix("/")
    assert signing.TimestampSigner(salt="cdp-preference-centre").unsign_object(
        token, max_age=timedelta(days=30)
    ) == {"w": workspace.pk, "p": str(profile_id)}
    assert EMAIL not in link
    assert USER_ID not in link


def test_the_page_shows_each_purpose_with_the_current_decision(
    client: Client, workspace: Any, profile_id: Any
) -> None:
    # given: analytics granted on the banner earlier
    services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-7", profile_id),
        decisions={"analytics": Decision.GRANTED, "advertising": Decision.DENIED},
        evidence=Evidence(method=Method.BANNER, jurisdiction="EU"),
    )

    # when
    response = client.get(_link(workspace, profile_id))

    # then
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    fields = [(field.name, field.value()) for field, _ in response.context["rows"]]
    assert fields == [
        ("analytics", "allow"),
        ("personalization", None),
        ("marketing_email", None),
        ("advertising", "refuse"),
        ("profiling", None),
    ]
    assert re.search(r'<input[^>]*name="analytics"[^>]*value="allow"[^>]*checked', html)
    assert re.search(r'<input[^>]*name="advertising"[^>]*value="refuse"[^>]*checked', html)
    assert not re.search(r'name="necessary"', html)
    assert [p.key for p in response.context["required"]] == ["necessary"]
    assert "Strictly necessary" in html
    # nothing identifies the person on the page
    assert EMAIL not in html
    assert USER_ID not in html


def test_a_post_records_the_changes_against_the_strongest_identity(
    workspace: Any, profile_id: Any
) -> None:
    # given
    path = _link(workspace, profile_id)
    client, csrf = _csrf_client(path)

    # when
    response = client.post(
        path,
        {"csrfmiddlewaretoken": csrf, "analytics": "allow", "marketing_email": "refuse"},
        HTTP_USER_AGENT="Example Browser/1.0",
    )

    # then: only what was chosen is recorded, as preference_centre, on the user id (the
    # strongest identity by the workspace's rules), with a receipt
    assert response.status_code == 302
    assert response["Location"] == f"{path}?saved=1"
    assert _ledger() == [
        ("analytics", "granted", "preference_centre", "user_id"),
        ("marketing_email", "denied", "preference_centre", "user_id"),
    ]
    record = ConsentRecord.objects.get(purpose__key="analytics")
    assert bytes(record.subject_index) == blind_index(workspace.pk, "user_id", USER_ID)
    assert record.profile_id == profile_id
    assert record.notice_version is not None
    assert record.notice_version.notice.key == "banner"
    assert sorted(record.proof) == ["ip", "page_url", "user_agent"]
    assert Receipt.objects.count() == 1
    state = selectors.consent_state_for_profile(workspace=workspace, profile_id=profile_id)
    assert {key: entry["decision"] for key, entry in state.items()} == {
        "analytics": "granted",
        "marketing_email": "denied",
    }
    assert "Your choices are saved." in client.get(response["Location"]).content.decode()


def test_without_a_user_id_the_email_is_the_subject(workspace: Any) -> None:
    # given: a profile known by an anonymous id and an email (email ranks above it)
    services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(workspace=workspace, name="Newsletter")
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", anonymous_id="anon-8", traits={"email": "Bo@Example.com"})],
    )
    path = _link(workspace, outcome.profile_ids[0])
    client, csrf = _csrf_client(path)

    # when
    client.post(path, {"csrfmiddlewaretoken": csrf, "marketing_email": "allow"})

    # then
    record = ConsentRecord.objects.get()
    assert (record.subject_type, record.decision) == ("email", "granted")
    assert bytes(record.subject_index) == blind_index(workspace.pk, "email", "bo@example.com")


def test_choosing_what_already_stands_adds_nothing_and_taking_back_is_a_withdrawal(
    workspace: Any, profile_id: Any
) -> None:
    # given: analytics granted, marketing email refused, in the preference centre
    path = _link(workspace, profile_id)
    client, csrf = _csrf_client(path)
    client.post(
        path, {"csrfmiddlewaretoken": csrf, "analytics": "allow", "marketing_email": "refuse"}
    )
    assert ConsentRecord.objects.count() == 2

    # when: the same choices again, then analytics taken back
    client.post(
        path, {"csrfmiddlewaretoken": csrf, "analytics": "allow", "marketing_email": "refuse"}
    )
    same_count = ConsentRecord.objects.count()
    client.post(
        path, {"csrfmiddlewaretoken": csrf, "analytics": "refuse", "marketing_email": "refuse"}
    )

    # then
    assert same_count == 2
    assert ConsentRecord.objects.count() == 3
    latest = ConsentRecord.objects.order_by("-server_time", "-id").first()
    assert latest is not None
    assert (latest.purpose.key, latest.decision, latest.method) == (
        "analytics",
        "withdrawn",
        "preference_centre",
    )
    assert ConsentState.objects.get(purpose__key="analytics").decision == "withdrawn"


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    workspace: Any, profile_id: Any
) -> None:
    # given
    path = _link(workspace, profile_id)
    client, _csrf = _csrf_client(path)

    # when
    response = client.post(path, {"analytics": "allow"})

    # then
    assert response.status_code == 403
    assert ConsentRecord.objects.count() == 0
    assert ConsentState.objects.count() == 0


def test_an_invalid_choice_is_a_400_and_changes_nothing(workspace: Any, profile_id: Any) -> None:
    # given
    path = _link(workspace, profile_id)
    client, csrf = _csrf_client(path)

    # when
    response = client.post(path, {"csrfmiddlewaretoken": csrf, "analytics": "maybe"})

    # then
    assert response.status_code == 400
    assert ConsentRecord.objects.count() == 0


def _tampered(workspace: Any, profile_id: Any, _other: Any) -> str:
    path = _link(workspace, profile_id)
    token = path.split("/")[-2]
    payload, stamp, signature = token.rsplit(":", 2)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return path.replace(token, f"{payload}:{stamp}:{flipped}")


def _expired(workspace: Any, profile_id: Any, _other: Any) -> str:
    thirty_one_days_ago = time.time() - timedelta(days=31).total_seconds()
    with mock.patch("django.core.signing.time.time", return_value=thirty_one_days_ago):
        return _link(workspace, profile_id)


def _other_salt(workspace: Any, profile_id: Any, _other: Any) -> str:
    token = signing.TimestampSigner(salt="something-else").sign_object(
        {"w": workspace.pk, "p": str(profile_id)}
    )
    return f"/consent/preferences/{token}/"


def _foreign(workspace: Any, profile_id: Any, other_workspace: Any) -> str:
    # a genuine signature, but the profile is not in the workspace the token names
    token = signing.TimestampSigner(salt="cdp-preference-centre").sign_object(
        {"w": other_workspace.pk, "p": str(profile_id)}
    )
    return f"/consent/preferences/{token}/"


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(_tampered, id="tampered"),
        pytest.param(_expired, id="expired"),
        pytest.param(_other_salt, id="other-salt"),
        pytest.param(_foreign, id="other-workspace"),
        pytest.param(lambda *_: "/consent/preferences/not-a-token/", id="garbage"),
    ],
)
def test_a_bad_link_is_a_404_and_changes_nothing(
    workspace: Any, other_workspace: Any, profile_id: Any, make_path: Any
) -> None:
    # given
    path = make_path(workspace, profile_id, other_workspace)
    client = Client()

    # when
    page = client.get(path)
    post = client.post(path, {"analytics": "allow"})

    # then
    assert page.status_code == 404
    assert post.status_code == 404
    assert ConsentRecord.objects.count() == 0
    assert ConsentState.objects.count() == 0


def test_a_link_signed_29_days_ago_still_opens(
    client: Client, workspace: Any, profile_id: Any
) -> None:
    # given
    twenty_nine_days_ago = time.time() - timedelta(days=29).total_seconds()
    with mock.patch("django.core.signing.time.time", return_value=twenty_nine_days_ago):
        path = _link(workspace, profile_id)

    # when / then
    assert client.get(path).status_code == 200


def test_the_management_command_prints_a_working_link(
    client: Client, workspace: Any, profile_id: Any
) -> None:
    # given
    out = StringIO()

    # when
    call_command(
        "preference_link",
        "--workspace",
        workspace.slug,
        "--profile",
        str(profile_id),
        "--base-url",
        BASE_URL,
        stdout=out,
    )

    # then
    link = out.getvalue().strip()
    assert link.startswith(f"{BASE_URL}/consent/preferences/")
    assert client.get(_path(link)).status_code == 200


def test_the_management_command_links_to_cdp_public_url_by_default(
    workspace: Any, profile_id: Any, settings: Any
) -> None:
    # given: the public address from the setting (so CDP_PUBLIC_URL_FILE works too)
    settings.CDP_PUBLIC_URL = BASE_URL
    out = StringIO()

    # when
    call_command(
        "preference_link", "--workspace", workspace.slug, "--profile", str(profile_id), stdout=out
    )

    # then
    assert out.getvalue().strip().startswith(f"{BASE_URL}/consent/preferences/")
