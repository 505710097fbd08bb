"""The consent banner (consent/static/consent/cdp-consent.js) over time, in Debian's Chromium: a
choice that grows older than the 13 months the banner keeps it. The shop page, the browser and
the helpers are those of test_consent_banner.py.

Playwright's event loop and Django's ORM cannot share a thread, so each test sets up the
database, runs the browser to the end, and only then reads what was stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from consent import services as consent_services
from consent.models import ConsentRecord
from profiles import services as profile_services
from tests.browser.harness import StaticServer
from tests.browser.test_consent_banner import (
    ASKED,
    DIALOG,
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
