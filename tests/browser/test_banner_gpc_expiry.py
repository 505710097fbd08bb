"""The consent banner (consent/static/consent/cdp-consent.js) over time, in Debian's Chromium: a
Global Privacy Control signal that a visitor turns on after accepting all (CCPA regs
§7025(c)(3): the earlier opt-in yields to the signal), and a choice that grows older than the
banner keeps it: 13 months, or the shortest validity of a purpose's grants on the server. The
shop page, the browser and the helpers are those of test_consent_banner.py.

Playwright's event loop and Django's ORM cannot share a thread, so each test sets up the
database, runs the browser to the end, and only then reads what was stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from consent import services as consent_services
from consent.models import ConsentRecord, ConsentState, Purpose
from profiles import services as profile_services
from tests.browser.harness import StaticServer
from tests.browser.test_consent_banner import (
    ASKED,
    DIALOG,
    GPC_INIT_SCRIPT,
    chromium,
    open_banner,
    records_of,
    shop_page,
    wait_for_consent_event,
)

pytestmark = [
    pytest.mark.slow,
    # WhiteNoise, in the live server, notes that collectstatic has not run; the live server
    # serves /static/ through the staticfiles finders instead
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

DAY_MS = 86_400_000
# What a page tag asks at DOMContentLoaded, before the banner's config has come back: the
# deferred banner script has run by then, and its config request is still out.
EARLY_GET_INIT_SCRIPT = """
document.addEventListener("DOMContentLoaded", () => {
  window.earlyAdvertising = window.cdpConsent.get("advertising");
});
"""
# The visitor's clock, moved forward: the banner reads the time with Date.now().
CLOCK_INIT_SCRIPT = """
(() => {
  const realNow = Date.now;
  Date.now = () => realNow.call(Date) + %d;
})();
"""


@pytest.fixture
def shop(live_server: Any, static_site: StaticServer, workspace: Any) -> dict[str, Any]:
    """As in test_consent_banner.py: the shop's source, the default purposes and notice, and
    the shop page's URL."""
    consent_services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(
        workspace=workspace, name="Shop", allowed_origins=[static_site.origin]
    )
    static_site.pages["/shop.html"] = shop_page(api_url=live_server.url, write_key=source.write_key)
    return {"url": f"{static_site.origin}/shop.html", "source": source, "api": live_server.url}


def accept_all(shop: dict[str, Any]) -> Any:
    """A visitor without GPC accepts all; their cookies and localStorage, for the next visit."""
    with chromium() as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Accept all").click()
        wait_for_consent_event(page)
        visitor = page.context.storage_state()
    records_of(shop["source"], len(ASKED))
    return visitor


def stored_choice(page: Any) -> dict[str, Any]:
    return dict(json.loads(page.evaluate("localStorage.getItem('cdp_consent')")))


def _gpc_property(page: Any) -> None:
    page.add_init_script(GPC_INIT_SCRIPT)


def _gpc_header(page: Any) -> None:
    page.set_extra_http_headers({"Sec-GPC": "1"})


def _gpc_both(page: Any) -> None:
    _gpc_property(page)
    _gpc_header(page)


@pytest.mark.parametrize(
    "turn_gpc_on",
    [
        pytest.param(_gpc_both, id="property-and-header"),
        # an extension that sets only navigator.globalPrivacyControl: the POST body says gpc
        pytest.param(_gpc_property, id="property-only"),
        # Sec-GPC alone is invisible to page script: the config reports it
        pytest.param(_gpc_header, id="header-only"),
    ],
)
def test_gpc_turned_on_after_accept_all_denies_sale_or_share_and_records_a_gpc_opt_out(
    shop: dict[str, Any], turn_gpc_on: Callable[[Any], None]
) -> None:
    # given: a visitor who accepted all without GPC
    visitor = accept_all(shop)
    assert ConsentRecord.objects.filter(purpose__key="advertising", decision="granted").exists()

    # when: the same visitor comes back with GPC turned on
    with chromium(storage_state=visitor) as (page, traffic):
        turn_gpc_on(page)
        page.add_init_script(EARLY_GET_INIT_SCRIPT)
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/v1/consent")
        ):
            page.goto(shop["url"])
        event = wait_for_consent_event(page)
        early = page.evaluate("window.earlyAdvertising")
        now = page.evaluate("['advertising', 'analytics'].map(window.cdpConsent.get)")
        banner = page.get_by_role("dialog").count()
        choice = stored_choice(page)
        # the next page view has nothing left to record
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.reload()
        page.wait_for_timeout(500)
        after_reload = page.evaluate("['advertising', 'analytics'].map(window.cdpConsent.get)")
        posts = [call for call in traffic.api_calls(shop["api"]) if call[0] == "POST"]

    # then: the CDP holds a GPC opt-out of advertising (method gpc, not a banner choice),
    # flagged so that the site may ask again; nothing else was recorded again
    gpc_records = records_of(shop["source"], len(ASKED) + 1)
    assert sorted(
        (r.purpose.key, r.decision, r.method) for r in gpc_records if r.method != "banner"
    ) == [("advertising", "denied", "gpc")]
    assert [r.signals for r in gpc_records if r.method == "gpc"] == [{"gpc": True}]
    assert ConsentRecord.objects.filter(source=shop["source"], method="banner").count() == len(
        ASKED
    )
    state = ConsentState.objects.get(purpose__key="advertising", workspace=shop["source"].workspace)
    assert (state.decision, state.needs_reconsent) == ("denied", True)
    # and the page's tags are told so, from the first moment when the property is visible
    if turn_gpc_on is not _gpc_header:
        assert early == "denied"
    assert now == ["denied", "granted"]
    assert after_reload == ["denied", "granted"]
    assert banner == 0
    assert event["state"]["advertising"] == "denied"
    assert event["state"]["analytics"] == "granted"
    assert event["receipt"]
    assert choice["decisions"]["advertising"] == "denied"
    assert choice["gpc"] is True
    assert posts == [("POST", "/v1/consent")]


def test_a_choice_made_under_gpc_posts_nothing_more_on_the_next_page(
    shop: dict[str, Any],
) -> None:
    # given: a visitor with GPC on accepts all (advertising stays denied)
    with chromium(gpc=True) as (page, traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Accept all").click()
        wait_for_consent_event(page)

        # when: the next page view
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.reload()
        page.wait_for_timeout(500)
        advertising = page.evaluate("window.cdpConsent.get('advertising')")
        posts = [call for call in traffic.api_calls(shop["api"]) if call[0] == "POST"]

    # then: one POST, the banner's; no GPC opt-out over a denial
    assert advertising == "denied"
    assert posts == [("POST", "/v1/consent")]
    assert not ConsentRecord.objects.filter(source=shop["source"], method="gpc").exists()


@pytest.mark.parametrize(
    ("days_later", "asked_again"),
    [
        pytest.param(394, False, id="13-months-less-a-day"),
        pytest.param(396, True, id="13-months-and-a-day"),
    ],
)
def test_a_choice_older_than_13_months_is_asked_again(
    shop: dict[str, Any], days_later: int, asked_again: bool
) -> None:
    # given: a visitor who accepted all
    visitor = accept_all(shop)

    # when: the same visitor comes back `days_later` days later (localStorage never expires,
    # and the cookie's own Max-Age is not what is tested here)
    with chromium(storage_state=visitor) as (page, _traffic):
        page.add_init_script(CLOCK_INIT_SCRIPT % (days_later * DAY_MS))
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.goto(shop["url"])
        page.wait_for_timeout(500)
        banner = page.get_by_role("dialog", name=DIALOG).count()
        analytics = page.evaluate("window.cdpConsent.get('analytics')")
        if asked_again:
            dialog = page.get_by_role("dialog", name=DIALOG)
            dialog.get_by_role("button", name="Reject all").click()
            event = wait_for_consent_event(page)

    # then: an expired choice counts as none (asked again, and get() answers nothing); the
    # new answer is recorded
    if asked_again:
        assert (banner, analytics) == (1, None)
        assert event["state"]["analytics"] == "denied"
        assert len(records_of(shop["source"], 2 * len(ASKED))) == 2 * len(ASKED)
    else:
        assert (banner, analytics) == (0, "granted")
        assert ConsentRecord.objects.filter(source=shop["source"]).count() == len(ASKED)


def set_validity(shop: dict[str, Any], key: str, days: int) -> None:
    """A steward gives `key` a shorter validity than the seeded 395 days."""
    Purpose.objects.filter(workspace=shop["source"].workspace, key=key).update(
        consent_validity_days=days
    )


@pytest.mark.parametrize(
    ("days_later", "asked_again"),
    [
        pytest.param(29, False, id="validity-less-a-day"),
        pytest.param(30, True, id="as-old-as-the-validity"),
    ],
)
def test_a_choice_is_asked_again_once_as_old_as_the_shortest_validity(
    shop: dict[str, Any], days_later: int, asked_again: bool
) -> None:
    # given: analytics grants hold 30 days on the server (one 60, the others 395), and a
    # visitor who accepted all
    set_validity(shop, "analytics", 30)
    set_validity(shop, "profiling", 60)
    visitor = accept_all(shop)
    [cookie] = [c for c in visitor["cookies"] if c["name"] == "cdp_consent"]

    # when: the same visitor comes back `days_later` days later
    with chromium(storage_state=visitor) as (page, _traffic):
        page.add_init_script(CLOCK_INIT_SCRIPT % (days_later * DAY_MS))
        page.add_init_script(EARLY_GET_INIT_SCRIPT)
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.goto(shop["url"])
        page.wait_for_timeout(500)
        early = page.evaluate("window.earlyAdvertising")
        banner = page.get_by_role("dialog", name=DIALOG).count()
        analytics = page.evaluate("window.cdpConsent.get('analytics')")

    # then: the choice is kept as long as the server holds the analytics grant, no longer
    # (the server expires a grant as old as its validity), before the config is in as well;
    # the cookie lasts as long
    if asked_again:
        assert (early, banner, analytics) == (None, 1, None)
    else:
        assert (early, banner, analytics) == ("granted", 0, "granted")
    assert cookie["expires"] - time.time() == pytest.approx(30 * 86_400, abs=3_600)


def test_a_validity_shortened_after_the_choice_asks_again_once_the_choice_is_that_old(
    shop: dict[str, Any],
) -> None:
    # given: a visitor who accepted all while grants held 395 days; then a steward shortens
    # the analytics validity to 30 days, and the server expires older grants
    visitor = accept_all(shop)
    set_validity(shop, "analytics", 30)

    # when: the same visitor comes back 31 days later
    with chromium(storage_state=visitor) as (page, _traffic):
        page.add_init_script(CLOCK_INIT_SCRIPT % (31 * DAY_MS))
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.goto(shop["url"])
        page.wait_for_timeout(500)
        banner = page.get_by_role("dialog", name=DIALOG).count()
        analytics = page.evaluate("window.cdpConsent.get('analytics')")
        dialog = page.get_by_role("dialog", name=DIALOG)
        dialog.get_by_role("button", name="Reject all").click()
        event = wait_for_consent_event(page)

    # then: asked again, the expired choice counting as none, and the new answer recorded
    assert (banner, analytics) == (1, None)
    assert event["state"]["analytics"] == "denied"
    assert len(records_of(shop["source"], 2 * len(ASKED))) == 2 * len(ASKED)


def test_a_choice_whose_time_cannot_be_read_is_asked_again(shop: dict[str, Any]) -> None:
    # given: a visitor who accepted all, whose stored choice then lost its time
    with chromium() as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Accept all").click()
        wait_for_consent_event(page)
        page.evaluate(
            """() => {
                const choice = JSON.parse(localStorage.getItem("cdp_consent"));
                choice.timestamp = "not a time";
                localStorage.setItem("cdp_consent", JSON.stringify(choice));
            }"""
        )

        # when
        page.reload()
        page.get_by_role("dialog", name=DIALOG).wait_for(state="visible")
        analytics = page.evaluate("window.cdpConsent.get('analytics')")

    # then: the banner asks again
    assert analytics is None


def test_the_cookie_alone_keeps_a_recent_choice(shop: dict[str, Any]) -> None:
    # given: a visitor who accepted all, whose localStorage was then cleared
    with chromium() as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Accept all").click()
        wait_for_consent_event(page)
        page.evaluate("localStorage.removeItem('cdp_consent')")

        # when
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.reload()
        page.wait_for_timeout(500)
        banner = page.get_by_role("dialog").count()
        analytics = page.evaluate("window.cdpConsent.get('analytics')")

    # then: the cookie carries the choice's time too, so it still counts
    assert (banner, analytics) == (0, "granted")
    assert ConsentRecord.objects.filter(source=shop["source"]).count() == len(ASKED)
