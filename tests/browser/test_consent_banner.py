"""The consent banner (consent/static/consent/cdp-consent.js) in Debian's Chromium: a shop page
on one 127.0.0.1 port embeds the script from the live server's /static/, and the consent API on
the live server records what the visitor chose. Also a real third-party banner, orestbida's
vanilla-cookieconsent from npm, posting through its documented hooks.

Playwright's event loop and Django's ORM cannot share a thread, so each test sets up the
database, runs the browser to the end, and only then reads what was stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pytest

from cdp.core.crypto import blind_index
from consent import services as consent_services
from consent.models import ConsentRecord, Notice
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from tests.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    HERE,
    LAUNCH_TIMEOUT_MS,
    NPM_REMEDY,
    PAGE_TIMEOUT_MS,
    StaticServer,
    require,
    require_chromium,
    wait_for,
)

if TYPE_CHECKING:
    from playwright.sync_api import StorageState

pytestmark = [
    pytest.mark.slow,
    # WhiteNoise, in the live server, notes that collectstatic has not run; the live server
    # serves /static/ through the staticfiles finders instead
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

COOKIECONSENT = HERE / "node_modules" / "vanilla-cookieconsent" / "dist"
SCRIPT_PATH = "/static/consent/cdp-consent.js"
DIALOG = "Your privacy choices"
IN_DIALOG = "document.activeElement.closest('[role=dialog]') !== null"
ASKED = ["advertising", "analytics", "marketing_email", "personalization", "profiling"]
# Chromium has no GPC setting: the header and the property are injected (ecosystem notes §2.5).
GPC_INIT_SCRIPT = """
Object.defineProperty(Navigator.prototype, "globalPrivacyControl", {
  get: () => true, configurable: true
});
"""


@dataclass
class Traffic:
    """What the page asked for: every request (method, url), CORS preflights (path), and the
    console, for failure messages."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    preflights: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def origins(self) -> set[str]:
        return {"{0.scheme}://{0.netloc}".format(urlsplit(url)) for _, url in self.requests}

    def api_calls(self, api_url: str) -> list[tuple[str, str]]:
        return [
            (method, urlsplit(url).path)
            for method, url in self.requests
            if url.startswith(api_url.rstrip("/") + "/v1/")
        ]


@contextmanager
def chromium(
    *, gpc: bool = False, storage_state: StorageState | None = None
) -> Iterator[tuple[Any, Traffic]]:
    """A page in Debian's Chromium (never a downloaded browser), closed on exit; with `gpc`, the
    context sends `Sec-GPC: 1` and defines navigator.globalPrivacyControl; `storage_state`
    (cookies and localStorage) carries a visitor over from an earlier browser."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    traffic = Traffic()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
            )
        except Exception as error:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {error}", pytrace=False)
        try:
            context = browser.new_context(
                extra_http_headers={"Sec-GPC": "1"} if gpc else None,
                storage_state=storage_state,
            )
            if gpc:
                context.add_init_script(GPC_INIT_SCRIPT)
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            page = context.new_page()
            page.on("request", lambda r: traffic.requests.append((r.method, r.url)))
            page.on("console", lambda message: traffic.console.append(message.text))
            page.on("pageerror", lambda error: traffic.console.append(f"pageerror: {error}"))
            cdp = context.new_cdp_session(page)
            # Playwright does not report preflights; Chromium's Network domain does
            cdp.on(
                "Network.responseReceived",
                lambda event: (
                    traffic.preflights.append(urlsplit(event["response"]["url"]).path)
                    if event.get("type") == "Preflight"
                    else None
                ),
            )
            cdp.send("Network.enable")
            yield page, traffic
        finally:
            browser.close()


def shop_page(
    *,
    api_url: str,
    write_key: str,
    jurisdiction: str | None = "EU",
    user: dict[str, str] | None = None,
) -> str:
    """A shop that embeds the banner exactly as the README tells a site to, and keeps every
    `cdp:consent` event it sees in `window.consentEvents`; `user`, the signed-in user's
    `data-user-id` and `data-user-hash`, as the site's server prints them."""
    api = api_url.rstrip("/")
    signed_in = " ".join(f'data-user-{name}="{value}"' for name, value in (user or {}).items())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Example shop</title>
<link rel="icon" href="data:,">
<script>
window.consentEvents = [];
document.addEventListener("cdp:consent", (event) => window.consentEvents.push(event.detail));
</script>
<script src="{api}{SCRIPT_PATH}" data-write-key="{write_key}" data-api="{api}"
        {f'data-jurisdiction="{jurisdiction}"' if jurisdiction else ""} {signed_in} defer></script>
</head>
<body>
<main>
<h1>Example shop</h1>
<p><a href="#products">Products</a> <button type="button" id="page-button">Add to cart</button></p>
</main>
</body>
</html>
"""


@pytest.fixture
def shop(live_server: Any, static_site: StaticServer, workspace: Any) -> dict[str, Any]:
    """The shop's source (accepting the static site's origin), the default purposes and
    notice, and the shop page's URL."""
    consent_services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(
        workspace=workspace, name="Shop", allowed_origins=[static_site.origin]
    )
    static_site.pages["/shop.html"] = shop_page(api_url=live_server.url, write_key=source.write_key)
    return {
        "url": f"{static_site.origin}/shop.html",
        "source": source,
        "workspace": workspace,
        "api": live_server.url,
        "site": static_site.origin,
    }


def open_banner(page: Any, url: str) -> Any:
    page.goto(url)
    dialog = page.get_by_role("dialog", name=DIALOG)
    dialog.wait_for(state="visible")
    return dialog


def wait_for_consent_event(page: Any) -> dict[str, Any]:
    page.wait_for_function("window.consentEvents.length > 0")
    return dict(page.evaluate("window.consentEvents[0]"))


def tab_to(page: Any, element_id: str, *, most: int = 12) -> None:
    """Press Tab until the element has focus (at most `most` times)."""
    for _ in range(most):
        if page.evaluate("document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")


def anonymous_id(page: Any) -> str:
    return str(page.evaluate("JSON.parse(localStorage.getItem('ajs_anonymous_id'))"))


def records_of(source: Any, count: int) -> list[ConsentRecord]:
    stored = wait_for(lambda: ConsentRecord.objects.filter(source=source).count() >= count)
    found = list(ConsentRecord.objects.filter(source=source).select_related("purpose"))
    assert stored, f"{len(found)} consent records stored, expected {count}"
    return found


def decisions_of(records: list[ConsentRecord]) -> dict[str, str]:
    return {r.purpose.key: r.decision for r in records}


def assert_only_site_and_api(traffic: Traffic, shop: dict[str, Any]) -> None:
    assert traffic.origins() <= {shop["site"], shop["api"].rstrip("/")}, traffic


@pytest.mark.parametrize(
    "jurisdiction",
    [
        pytest.param("EU", id="eu"),
        # no data-jurisdiction: the config answers for "default", nothing is recorded as one
        pytest.param(None, id="no-jurisdiction"),
    ],
)
def test_reject_all_stores_a_denial_for_every_purpose_that_is_asked(
    shop: dict[str, Any], static_site: StaticServer, jurisdiction: str | None
) -> None:
    # given
    static_site.pages["/shop.html"] = shop_page(
        api_url=shop["api"], write_key=shop["source"].write_key, jurisdiction=jurisdiction
    )

    # when
    with chromium() as (page, traffic):
        dialog = open_banner(page, shop["url"])
        # the purposes wait behind "Customise"; hidden elements have no role to find
        purposes_hidden = dialog.get_by_role("checkbox").count() == 0
        dialog.get_by_role("button", name="Reject all").click()
        event = wait_for_consent_event(page)
        anon = anonymous_id(page)
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        banner_after = page.get_by_role("dialog").count()

    # then: one record per asked purpose (none for the required one), on the visitor's
    # anonymous id, as method banner; the choice is kept on the site with the notice version
    records = records_of(shop["source"], len(ASKED))
    assert purposes_hidden
    assert banner_after == 0
    assert sorted(decisions_of(records).items()) == [(key, "denied") for key in ASKED]
    assert {r.method for r in records} == {"banner"}
    assert {r.subject_type for r in records} == {"anonymous_id"}
    assert {bytes(r.subject_index) for r in records} == {
        blind_index(shop["workspace"].pk, "anonymous_id", anon)
    }
    assert {r.jurisdiction for r in records} == {jurisdiction or ""}
    assert {r.notice_version.version for r in records if r.notice_version} == {1}
    assert event["state"] == {"necessary": "granted", **dict.fromkeys(ASKED, "denied")}
    assert event["receipt"]
    assert cookies["ajs_anonymous_id"] == anon
    stored_choice = json.loads(unquote(cookies["cdp_consent"]))
    assert (stored_choice["version"], stored_choice["notice"]) == (1, "banner")
    assert stored_choice["decisions"]["analytics"] == "denied"
    # a text/plain POST and a plain GET: nothing needed a preflight, nothing went elsewhere
    assert traffic.api_calls(shop["api"]) == [
        ("GET", "/v1/consent/config"),
        ("POST", "/v1/consent"),
    ]
    assert traffic.preflights == []
    assert_only_site_and_api(traffic, shop)


def test_customise_grants_only_what_was_ticked(shop: dict[str, Any]) -> None:
    # when: customise, tick analytics alone, save
    with chromium() as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Customise").click()
        necessary = dialog.get_by_role("checkbox", name="Strictly necessary")
        required_state = (necessary.is_checked(), necessary.is_disabled())
        # EU: every asked purpose is opt-in, so none starts ticked
        ticked_at_start = [
            key for key in ASKED if dialog.locator(f"#cdp-consent-purpose-{key}").is_checked()
        ]
        dialog.get_by_role("checkbox", name="Analytics").check()
        dialog.get_by_role("button", name="Save choices").click()
        event = wait_for_consent_event(page)

    # then
    records = records_of(shop["source"], len(ASKED))
    assert required_state == (True, True)
    assert ticked_at_start == []
    assert decisions_of(records) == {
        "analytics": "granted",
        "personalization": "denied",
        "marketing_email": "denied",
        "advertising": "denied",
        "profiling": "denied",
    }
    assert {r.method for r in records} == {"banner"}
    assert event["state"]["analytics"] == "granted"
    assert event["state"]["profiling"] == "denied"


def test_global_privacy_control_keeps_advertising_denied_even_on_accept_all(
    shop: dict[str, Any],
) -> None:
    # when: a browser with GPC on looks at the purposes, then accepts all
    with chromium(gpc=True) as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Customise").click()
        advertising = dialog.get_by_role("checkbox", name="Advertising (sale or sharing)")
        advertising_at_start = (advertising.is_checked(), advertising.is_disabled())
        note = dialog.locator("#cdp-consent-purpose-advertising-description").inner_text()
        dialog.get_by_role("button", name="Accept all").click()
        event = wait_for_consent_event(page)

    # then: advertising (sale or sharing) is denied with the GPC signal on the record, and
    # every other asked purpose is granted
    records_of(shop["source"], len(ASKED))
    assert advertising_at_start == (False, True)
    assert "Global Privacy Control" in note
    assert ConsentRecord.objects.filter(
        source=shop["source"], purpose__key="advertising", decision="denied", signals__gpc=True
    ).exists()
    assert not ConsentRecord.objects.filter(purpose__key="advertising", decision="granted").exists()
    latest = {
        r.purpose.key: r.decision
        for r in ConsentRecord.objects.filter(source=shop["source"])
        .select_related("purpose")
        .order_by("server_time", "id")
    }
    assert latest == {**dict.fromkeys(ASKED, "granted"), "advertising": "denied"}
    assert event["state"]["advertising"] == "denied"


def test_keyboard_alone_reaches_accept_all_in_a_named_modal_dialog(shop: dict[str, Any]) -> None:
    # when: the page opens, the visitor uses only the keyboard
    with chromium() as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        attributes = dialog.evaluate(
            """(node) => ({
                modal: node.getAttribute("aria-modal"),
                description: document.getElementById(
                    node.getAttribute("aria-describedby")).textContent.trim(),
                focused: document.activeElement === node,
                buttons: [...node.querySelectorAll("#cdp-consent-main > *")].map(
                    (b) => b.tagName),
            })"""
        )
        # focus stays in the dialog however far the visitor tabs, both ways
        focus_trail = []
        for key in ["Tab"] * 8 + ["Shift+Tab"] * 8:
            page.keyboard.press(key)
            focus_trail.append(page.evaluate(IN_DIALOG))
        # Escape leaves the customise view, back on the button that opened it
        tab_to(page, "cdp-consent-customise")
        page.keyboard.press("Enter")
        in_customise = page.evaluate("document.activeElement.id")
        page.keyboard.press("Escape")
        after_escape = page.evaluate("document.activeElement.id")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        # then Tab (wrapping) until "Accept all" has focus, and Enter
        tab_to(page, "cdp-consent-accept")
        reached = page.evaluate("document.activeElement.textContent")
        page.keyboard.press("Enter")
        event = wait_for_consent_event(page)

    # then
    records = records_of(shop["source"], len(ASKED))
    assert attributes == {
        "modal": "true",
        "description": attributes["description"],
        "focused": True,
        "buttons": ["BUTTON", "BUTTON", "BUTTON"],
    }
    assert attributes["description"].startswith("Acme Store and its partners use cookies")
    assert all(focus_trail), focus_trail
    assert in_customise == "cdp-consent-purpose-analytics"
    assert after_escape == "cdp-consent-customise"
    assert outline == "solid"
    assert reached == "Accept all"
    assert decisions_of(records) == dict.fromkeys(ASKED, "granted")
    assert event["state"]["analytics"] == "granted"


def test_the_page_api_answers_after_the_choice_and_a_reload_shows_no_banner(
    shop: dict[str, Any],
) -> None:
    # when
    with chromium() as (page, traffic):
        dialog = open_banner(page, shop["url"])
        before = page.evaluate("window.cdpConsent.get('analytics')")
        page.evaluate(
            """() => {
                window.changes = [];
                window.cdpConsent.onChange((detail) => window.changes.push(detail));
            }"""
        )
        dialog.get_by_role("button", name="Customise").click()
        dialog.get_by_role("checkbox", name="Analytics").check()
        dialog.get_by_role("button", name="Save choices").click()
        event = wait_for_consent_event(page)
        after = page.evaluate(
            "['analytics', 'advertising', 'necessary', 'nonsense'].map(window.cdpConsent.get)"
        )
        changes = page.evaluate("window.changes")
        # the config is fetched again, and the stored choice matches its notice version
        with page.expect_response(lambda r: "/v1/consent/config" in r.url):
            page.reload()
        reloaded = page.evaluate("window.cdpConsent.get('analytics')")
        page.wait_for_timeout(500)
        banner_after_reload = page.get_by_role("dialog").count()
        # show() opens it again on demand (a "privacy choices" link)
        page.evaluate("window.cdpConsent.show()")
        page.get_by_role("dialog", name=DIALOG).wait_for(state="visible")

    # then
    assert before is None
    assert after == ["granted", "denied", "granted", None]
    assert event["state"]["analytics"] == "granted"
    assert changes == [event]
    assert reloaded == "granted"
    assert banner_after_reload == 0
    # the second page view recorded nothing
    assert [call for call in traffic.api_calls(shop["api"]) if call[0] == "POST"] == [
        ("POST", "/v1/consent")
    ]
    assert len(records_of(shop["source"], len(ASKED))) == len(ASKED)


def test_a_new_notice_version_asks_again_with_the_earlier_choice_filled_in(
    shop: dict[str, Any],
) -> None:
    # given: a visitor who allowed analytics alone under notice version 1
    with chromium() as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Customise").click()
        dialog.get_by_role("checkbox", name="Analytics").check()
        dialog.get_by_role("button", name="Save choices").click()
        wait_for_consent_event(page)
        visitor = page.context.storage_state()
    records_of(shop["source"], len(ASKED))
    notice = Notice.objects.get(workspace=shop["workspace"], key="banner")
    consent_services.notice_version_publish(
        notice=notice, text="We now also work with a new partner.", purposes=ASKED
    )

    # when: the same visitor comes back
    with chromium(storage_state=visitor) as (page, _traffic):
        dialog = open_banner(page, shop["url"])
        text = dialog.get_by_text("We now also work with a new partner.").count()
        dialog.get_by_role("button", name="Customise").click()
        ticked = [
            key for key in ASKED if dialog.locator(f"#cdp-consent-purpose-{key}").is_checked()
        ]
        dialog.get_by_role("button", name="Save choices").click()
        wait_for_consent_event(page)

    # then: asked again under version 2, the earlier choice filled in, and recorded again
    assert text == 1
    assert ticked == ["analytics"]
    records = records_of(shop["source"], 2 * len(ASKED))
    assert sorted({r.notice_version.version for r in records if r.notice_version}) == [1, 2]


# --- identity verification ----------------------------------------------------------------------


def test_a_signed_in_user_is_named_with_the_hash_the_sites_server_printed(
    shop: dict[str, Any], static_site: StaticServer
) -> None:
    # given: the source verifies identities; the shop's server signs its signed-in user
    issued = profile_services.source_identity_verification_enable(source=shop["source"])
    user_hash = profile_selectors.user_hash_for(secret=issued.secret, user_id="user-ada")
    static_site.pages["/shop.html"] = shop_page(
        api_url=shop["api"],
        write_key=shop["source"].write_key,
        user={"id": "user-ada", "hash": user_hash},
    )

    # when
    with chromium() as (page, traffic):
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Reject all").click()
        event = wait_for_consent_event(page)

    # then: recorded for the user, in one request
    records = records_of(shop["source"], len(ASKED))
    assert {r.subject_type for r in records} == {"user_id"}
    assert {bytes(r.subject_index) for r in records} == {
        blind_index(shop["workspace"].pk, "user_id", "user-ada")
    }
    assert event["receipt"]
    assert [c for c in traffic.api_calls(shop["api"]) if c[0] == "POST"] == [
        ("POST", "/v1/consent")
    ]
    assert not [line for line in traffic.console if "could not be verified" in line]


@pytest.mark.parametrize(
    ("user", "refusal"),
    [
        # analytics.js' stored userId, and no hash printed: the site has not set it up
        pytest.param(None, "identity_verification_required", id="no-hash"),
        # a hash made with the secret before its rotation
        pytest.param(
            {"id": "user-ada", "hash": "0" * 64}, "identity_verification_failed", id="stale-hash"
        ),
        # a userId printed with whitespace around it: refused whatever its hash
        pytest.param({"id": " user-ada ", "hash": "0" * 64}, "invalid_user_id", id="whitespace"),
    ],
)
def test_an_unverified_user_is_recorded_for_the_browser_alone(
    shop: dict[str, Any], static_site: StaticServer, user: dict[str, str] | None, refusal: str
) -> None:
    # given
    profile_services.source_identity_verification_enable(source=shop["source"])
    static_site.pages["/shop.html"] = shop_page(
        api_url=shop["api"], write_key=shop["source"].write_key, user=user
    )

    # when
    with chromium() as (page, traffic):
        page.add_init_script("localStorage.setItem('ajs_user_id', JSON.stringify('user-ada'))")
        dialog = open_banner(page, shop["url"])
        dialog.get_by_role("button", name="Reject all").click()
        event = wait_for_consent_event(page)
        anon = anonymous_id(page)
        stored = page.evaluate("JSON.parse(localStorage.getItem('cdp_consent'))")

    # then: the choice is not lost, but it names the browser only, never the unproven user
    records = records_of(shop["source"], len(ASKED))
    assert {r.subject_type for r in records} == {"anonymous_id"}
    assert {bytes(r.subject_index) for r in records} == {
        blind_index(shop["workspace"].pk, "anonymous_id", anon)
    }
    assert event["receipt"]
    assert stored["sent"] is True
    assert [c for c in traffic.api_calls(shop["api"]) if c[0] == "POST"] == [
        ("POST", "/v1/consent"),
        ("POST", "/v1/consent"),
    ]
    assert [line for line in traffic.console if "could not be verified" in line] == [
        "cdp-consent: the signed-in user could not be verified "
        f"({refusal}); recording the choice for this browser only"
    ]


# --- orestbida/cookieconsent v3 ---------------------------------------------------------------

COOKIECONSENT_GLUE = """
// The documented consent-logging recipe (docs/advanced/consent-logging.md): POST the
// categories from onFirstConsent and onChange. Category names are the CDP's purpose keys.
const API = %(api)s;
const WRITE_KEY = %(write_key)s;
window.posted = [];
function logConsent(kind) {
  const cookie = CookieConsent.getCookie();
  const prefs = CookieConsent.getUserPreferences();
  const decisions = {};
  for (const category of prefs.acceptedCategories) {
    if (category !== "necessary") decisions[category] = "granted";
  }
  for (const category of prefs.rejectedCategories) decisions[category] = "denied";
  return fetch(API + "/v1/consent", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      writeKey: WRITE_KEY,
      anonymousId: cookie.consentId,
      decisions,
      noticeVersion: cookie.revision,
      jurisdiction: "EU",
      gpc: navigator.globalPrivacyControl === true,
      timestamp: new Date().toISOString(),
      context: { page: { url: location.href }, userAgent: navigator.userAgent },
      method: "banner",
    }),
  })
    .then((response) => response.json().then((body) => ({ status: response.status, body })))
    .then((answer) => window.posted.push({ kind, decisions, answer }))
    .catch((error) => window.posted.push({ kind, decisions, error: String(error) }));
}
CookieConsent.run({
  hideFromBots: false,  // it hides from headless browsers otherwise
  revision: 1,
  categories: {
    necessary: { enabled: true, readOnly: true },
    analytics: {},
    advertising: {},
  },
  onFirstConsent: () => logConsent("first"),
  onChange: () => logConsent("change"),
  language: {
    default: "en",
    translations: {
      en: {
        consentModal: {
          title: "We use cookies",
          description: "Choose what this shop may do.",
          acceptAllBtn: "Accept all",
          acceptNecessaryBtn: "Reject all",
          showPreferencesBtn: "Manage preferences",
        },
        preferencesModal: {
          title: "Cookie preferences",
          acceptAllBtn: "Accept all",
          acceptNecessaryBtn: "Reject all",
          savePreferencesBtn: "Save preferences",
          sections: [
            { title: "Strictly necessary", linkedCategory: "necessary" },
            { title: "Analytics", linkedCategory: "analytics" },
            { title: "Advertising", linkedCategory: "advertising" },
          ],
        },
      },
    },
  },
});
"""


def cookieconsent_page(*, api_url: str, write_key: str) -> str:
    require(COOKIECONSENT / "cookieconsent.umd.js", NPM_REMEDY)
    bundle = (COOKIECONSENT / "cookieconsent.umd.js").read_text()
    css = (COOKIECONSENT / "cookieconsent.css").read_text()
    # inlined into the page, which only "</script" could end early
    assert "</script" not in bundle.lower()
    assert "</style" not in css.lower()
    glue = COOKIECONSENT_GLUE % {
        "api": json.dumps(api_url.rstrip("/")),
        "write_key": json.dumps(write_key),
    }
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Example shop (cookieconsent)</title>
<link rel="icon" href="data:,">
<style>{css}</style>
</head>
<body>
<h1>Example shop</h1>
<script>{bundle}</script>
<script>{glue}</script>
</body>
</html>
"""


def test_vanilla_cookieconsent_posts_its_choices_through_its_documented_hooks(
    live_server: Any, static_site: StaticServer, workspace: Any
) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(
        workspace=workspace, name="Shop", allowed_origins=[static_site.origin]
    )
    static_site.pages["/cc.html"] = cookieconsent_page(
        api_url=live_server.url, write_key=source.write_key
    )

    # when: first consent with analytics only; later the visitor also allows advertising
    with chromium() as (page, traffic):
        page.goto(f"{static_site.origin}/cc.html")
        page.get_by_role("button", name="Manage preferences").click()
        preferences = page.get_by_role("dialog", name="Cookie preferences")
        preferences.wait_for(state="visible")
        preferences.get_by_role("checkbox", name="Analytics").check()
        preferences.get_by_role("button", name="Save preferences").click()
        page.wait_for_function("window.posted.length === 1")
        consent_id = page.evaluate("CookieConsent.getCookie().consentId")
        page.evaluate("CookieConsent.showPreferences()")
        preferences.wait_for(state="visible")
        preferences.get_by_role("checkbox", name="Advertising").check()
        preferences.get_by_role("button", name="Save preferences").click()
        page.wait_for_function("window.posted.length === 2")
        posted = page.evaluate("window.posted")

    # then: both answers were successes and the ledger holds both changes, on the consentId
    assert [(p["kind"], p["answer"]["status"]) for p in posted] == [
        ("first", 200),
        ("change", 200),
    ], (posted, traffic.console)
    assert posted[0]["decisions"] == {"analytics": "granted", "advertising": "denied"}
    assert posted[1]["decisions"] == {"analytics": "granted", "advertising": "granted"}
    records = records_of(source, 4)
    ordered = sorted(records, key=lambda r: (r.server_time, r.purpose.key))
    assert [(r.purpose.key, r.decision) for r in ordered] == [
        ("advertising", "denied"),
        ("analytics", "granted"),
        ("advertising", "granted"),
        ("analytics", "granted"),
    ]
    assert {r.method for r in records} == {"banner"}
    assert {bytes(r.subject_index) for r in records} == {
        blind_index(workspace.pk, "anonymous_id", consent_id)
    }
    # application/json is not CORS-safelisted: the API answered the preflight
    assert "/v1/consent" in traffic.preflights
    assert traffic.origins() <= {static_site.origin, live_server.url.rstrip("/")}
