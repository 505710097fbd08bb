"""@segment/analytics-next, from npm, in a real browser on one 127.0.0.1 origin, sending to the
collection API on another: its identify and track calls are stored (personal data sealed),
and a page on an origin its source does not accept stores nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from profiles import selectors, services
from profiles.models import Event, Identity, Profile, SeenMessage
from tests.browser.harness import (
    StaticServer,
    analytics_next_page,
    analytics_next_settings,
    analytics_next_version,
    visit,
    wait_for,
)

pytestmark = [
    pytest.mark.slow,
    # WhiteNoise, in the live server, notes that collectstatic has not run; no page needs it
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

USER_ID = "user-browser-1"
# Mixed case on the wire, so that normalization is visible in what is stored.
EMAIL_SENT = "Browser.Sentinel@Example.com"
EMAIL_STORED = "browser.sentinel@example.com"
IDENTIFY_AND_TRACK = f"""
await analytics.identify({json.dumps(USER_ID)}, {{ email: {json.dumps(EMAIL_SENT)} }});
await analytics.track("Product Viewed", {{ product_id: "sku-1" }});
"""


def _open(site: StaticServer, *, api_url: str, write_key: str) -> str:
    settings = analytics_next_settings(site=site, api_url=api_url, write_key=write_key)
    site.pages["/shop.html"] = analytics_next_page(
        site=site, settings=settings, script=IDENTIFY_AND_TRACK
    )
    return f"{site.origin}/shop.html"


def _as_text(value: object) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _columns_containing(needle: str) -> list[str]:
    """`table.column` of every value in the database (events and identities among them) that
    contains `needle`, case-insensitively: raw SQL, so no field decrypts on the way."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
            ]
            quoted = ", ".join(connection.ops.quote_name(name) for name in columns)
            cursor.execute(f"SELECT {quoted} FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for name, value in zip(columns, row, strict=True):
                    if value is not None and needle.lower() in _as_text(value).lower():
                        found.append(f"{table}.{name}")
    return sorted(set(found))


def _row_counts() -> dict[str, int]:
    """Rows per table, every table: a refused request must change none of them."""
    with connection.cursor() as cursor:
        counts = {}
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


def test_identify_and_track_reach_the_api_cross_origin(
    live_server: Any, static_site: StaticServer, workspace: Any
) -> None:
    # given: a website source that accepts the static site's origin
    source = services.source_create(
        workspace=workspace, name="Browser shop", allowed_origins=[static_site.origin]
    )
    url = _open(static_site, api_url=live_server.url, write_key=source.write_key)

    # when
    log = visit(url, api_url=live_server.url, api_paths=["/v1/i", "/v1/t"])

    # then: each POST was preflighted (Basic auth is not CORS-safelisted) and allowed, the
    # page read two successes, and nothing left 127.0.0.1
    assert sorted(set(log.preflights)) == [
        ("/v1/i", 204, static_site.origin),
        ("/v1/t", 204, static_site.origin),
    ], log
    assert sorted(log.responses) == [("POST", "/v1/i", 200), ("POST", "/v1/t", 200)], log
    assert log.failures == [], log
    assert log.offsite == [], log
    stored = wait_for(lambda: Event.objects.filter(source=source).count() >= 2)
    assert stored, f"events not stored within the wait; browser saw {log}"
    events = {event.type: event for event in Event.objects.filter(source=source)}
    assert sorted(events) == ["identify", "track"]
    assert events["track"].name == "Product Viewed"
    assert events["track"].properties == {"product_id": "sku-1"}
    assert events["identify"].context["library"] == {
        "name": "analytics.js",
        "version": f"next-{analytics_next_version()}",
    }
    assert events["identify"].profile_id == events["track"].profile_id
    identities = Identity.objects.filter(workspace=workspace, profile_id=events["track"].profile_id)
    assert identities.get(identifier_type="user_id").value == USER_ID
    assert identities.get(identifier_type="email").value == EMAIL_STORED
    assert _columns_containing("browser.sentinel") == []


MIDDLEWARE = """
analytics.addSourceMiddleware(({ payload, next }) => {
  payload.obj.context = { ...payload.obj.context, userHash: window.CDP_USER_HASH };
  next(payload);
});
"""


def _vouching_script(how: str, user_hash: str) -> str:
    """IDENTIFY_AND_TRACK with the hash the site's server printed, added as the README says:
    by a source middleware, per call in `options.context`, or not at all."""
    if how == "middleware":
        return (
            f"window.CDP_USER_HASH = {json.dumps(user_hash)};\n{MIDDLEWARE}\n{IDENTIFY_AND_TRACK}"
        )
    if how == "per-call":
        options = f"{{ context: {{ userHash: {json.dumps(user_hash)} }} }}"
        return (
            f"await analytics.identify({json.dumps(USER_ID)}, "
            f"{{ email: {json.dumps(EMAIL_SENT)} }}, {options});\n"
            f'await analytics.track("Product Viewed", {{ product_id: "sku-1" }}, {options});'
        )
    return IDENTIFY_AND_TRACK


@pytest.mark.parametrize("how", ["middleware", "per-call", "none"])
def test_a_verifying_source_links_only_what_the_page_vouches_for(
    live_server: Any, static_site: StaticServer, workspace: Any, how: str
) -> None:
    # given: a source that verifies identities, and the hash its site's server computed
    source = services.source_create(
        workspace=workspace, name="Browser shop", allowed_origins=[static_site.origin]
    )
    secret = services.source_identity_verification_enable(source=source).secret
    user_hash = selectors.user_hash_for(secret=secret, user_id=USER_ID)
    settings = analytics_next_settings(
        site=static_site, api_url=live_server.url, write_key=source.write_key
    )
    static_site.pages["/shop.html"] = analytics_next_page(
        site=static_site, settings=settings, script=_vouching_script(how, user_hash)
    )

    # when
    log = visit(
        f"{static_site.origin}/shop.html", api_url=live_server.url, api_paths=["/v1/i", "/v1/t"]
    )

    # then: both answered 200 and stored, on one profile
    assert sorted(log.responses) == [("POST", "/v1/i", 200), ("POST", "/v1/t", 200)], log
    stored = wait_for(lambda: Event.objects.filter(source=source).count() >= 2)
    assert stored, f"events not stored within the wait; browser saw {log}"
    events = {event.type: event for event in Event.objects.filter(source=source)}
    assert events["identify"].profile_id == events["track"].profile_id
    kinds = set(
        Identity.objects.filter(
            workspace=workspace, profile_id=events["track"].profile_id
        ).values_list("identifier_type", flat=True)
    )
    if how == "none":  # kept, but claiming no one: the browser's anonymousId alone
        assert kinds == {"anonymous_id"}
    else:
        assert kinds == {"anonymous_id", "user_id", "email"}
    # the hash is checked, never kept
    assert all("userHash" not in event.context for event in events.values())
    assert _columns_containing(user_hash) == []


@pytest.mark.parametrize(
    ("origin_elsewhere", "refused_by"),
    [
        # no source accepts the page's origin: the preflight gets no Allow-Origin
        pytest.param(False, "PreflightMissingAllowOriginHeader", id="preflight-refused"),
        # another workspace's source accepts it, so the preflight passes; the request itself
        # is refused by its own source (403, no Allow-Origin)
        pytest.param(True, "MissingAllowOriginHeader", id="request-refused"),
    ],
)
def test_page_on_an_origin_the_source_does_not_accept_stores_nothing(
    live_server: Any,
    static_site: StaticServer,
    workspace: Any,
    other_workspace: Any,
    origin_elsewhere: bool,
    refused_by: str,
) -> None:
    # given: the source accepts only its own shop; the page runs on the static site
    source = services.source_create(
        workspace=workspace, name="Browser shop", allowed_origins=["https://shop.example.com"]
    )
    if origin_elsewhere:
        services.source_create(
            workspace=other_workspace, name="Globex site", allowed_origins=[static_site.origin]
        )
    url = _open(static_site, api_url=live_server.url, write_key=source.write_key)
    before = _row_counts()

    # when
    log = visit(url, api_url=live_server.url, api_paths=["/v1/i", "/v1/t"])

    # then: every attempt failed in the browser, on CORS, and nothing was stored
    assert log.responses == [], log
    assert {path for _, path, _ in log.failures} == {"/v1/i", "/v1/t"}, log
    assert {error for _, _, error in log.failures} == {"net::ERR_FAILED"}, log
    assert {path for path, _ in log.cors_errors} == {"/v1/i", "/v1/t"}, log
    assert {allow_origin for _, _, allow_origin in log.preflights} == {
        static_site.origin if origin_elsewhere else None
    }, log
    assert {reason for _, reason in log.cors_errors} == {refused_by}, log
    assert log.offsite == [], log
    assert Event.objects.count() == 0
    assert Identity.objects.count() == 0
    assert Profile.objects.count() == 0
    assert SeenMessage.objects.count() == 0
    assert _row_counts() == before
