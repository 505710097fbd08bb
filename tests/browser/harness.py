"""Real browser SDKs against the collection API, in Debian's Chromium driven by Playwright.

The SDK bundle is read from `tests/browser/node_modules` (`npm ci --prefix tests/browser`, which
`make test` runs when npm is installed). A missing prerequisite skips a test, saying what is
missing and how to install it, except under CI (`CI` set), where it fails: CI installs them all
and must never pass by skipping these tests.

No `page.route()` anywhere: while any route is active, Playwright answers CORS preflights
itself, permissively, and the API's own CORS answers would go untested.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

HERE = Path(__file__).resolve().parent
ANALYTICS_NEXT = HERE / "node_modules" / "@segment" / "analytics-next"
ANALYTICS_NEXT_UMD = ANALYTICS_NEXT / "dist" / "umd"
# The UMD build loads its chunks from `<cdn>/analytics-next/bundles/`, `<cdn>` being
# `window.analytics._cdn` when set (Segment's snippet sets it), else Segment's CDN. The page
# sets it to the static server, which serves dist/umd at that path.
BUNDLES_PATH = "/analytics-next/bundles/"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_REMEDY = (
    "install Debian's chromium (`apt-get install chromium`, listed in .ci/apt-packages); "
    "never `playwright install`"
)
NPM_REMEDY = (
    "run `npm ci --prefix tests/browser` (`make test` runs it when npm is installed; "
    "npm itself: `apt-get install npm`)"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # no calls home from a closed network
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
PAGE_TIMEOUT_MS = 10_000
BROWSER_WAIT_SECONDS = 20.0
DB_WAIT_SECONDS = 15.0


def in_ci() -> bool:
    """Whether this runs in CI: `CI` set to anything but empty, 0, false or no (CI services
    set it to true, and so does .ci/run)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def require(path: Path, remedy: str) -> None:
    """Skip the test when a browser-test prerequisite is missing, naming it and its remedy; fail
    instead under CI, which installs them all."""
    if path.exists():
        return
    reason = f"{path} not found: {remedy}"
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails rather than skips)", pytrace=False)
    pytest.skip(reason)


def require_chromium() -> None:
    require(CHROMIUM, CHROMIUM_REMEDY)


def analytics_next_version() -> str:
    return str(json.loads((ANALYTICS_NEXT / "package.json").read_text())["version"])


class _StaticHandler(SimpleHTTPRequestHandler):
    """Test pages from memory, the SDK bundle from node_modules, 404 for anything else."""

    server: StaticServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.requested.append(path)
        page = self.server.pages.get(path)
        if page is not None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        if not path.startswith(BUNDLES_PATH):
            self.send_error(404)
            return
        self.path = "/" + path.removeprefix(BUNDLES_PATH)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticServer(ThreadingHTTPServer):
    """http.server on a free 127.0.0.1 port; `pages` maps paths to HTML."""

    daemon_threads = True

    def __init__(self) -> None:
        handler = partial(_StaticHandler, directory=str(ANALYTICS_NEXT_UMD))
        super().__init__(("127.0.0.1", 0), handler)
        self.pages: dict[str, str] = {}
        self.requested: list[str] = []

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def analytics_next_settings(*, site: StaticServer, api_url: str, write_key: str) -> dict[str, Any]:
    """`AnalyticsBrowser.load()` settings that send to our API and fetch nothing from Segment."""
    api = urlsplit(api_url)
    return {
        "writeKey": write_key,
        "cdnURL": site.origin,
        # Given inline, the CDN settings are not fetched from `<cdnURL>/v1/projects/...`.
        "cdnSettings": {
            "integrations": {
                "Segment.io": {
                    # the Segment.io plugin takes the body's writeKey (and so the Basic
                    # credentials) from `apiKey`, not from the load settings' writeKey
                    "apiKey": write_key,
                    "apiHost": f"{api.netloc}/v1",
                    "protocol": api.scheme,
                }
            },
            # no SDK telemetry to api.segment.io/v1/m
            "metrics": {"sampleRate": 0},
        },
    }


def analytics_next_page(*, site: StaticServer, settings: dict[str, Any], script: str) -> str:
    """A page that loads analytics-next from `site`, then runs `script` (JavaScript, with
    `analytics` in scope, awaited); `window.cdpDone` turns true when it has settled."""
    # JSON in a <script> element: only "</script" could end it early
    settings_json = json.dumps(settings).replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>analytics-next test page</title>
<link rel="icon" href="data:,">
<script>window.analytics = {{ _cdn: {json.dumps(site.origin)} }};</script>
<script src="{BUNDLES_PATH}index.js"></script>
</head>
<body>
<script type="application/json" id="settings">{settings_json}</script>
<script>
window.cdpDone = false;
const analytics = window.AnalyticsNext.AnalyticsBrowser.load(
  JSON.parse(document.getElementById("settings").textContent)
);
(async () => {{ {script} }})()
  .catch((error) => console.error("test script failed:", error))
  .finally(() => {{ window.cdpDone = true; }});
</script>
</body>
</html>
"""


@dataclass
class NetworkLog:
    """What the browser saw of the API: preflights (path, status, Access-Control-Allow-Origin),
    statuses the page could read, requests that failed, with Chromium's CORS reason where there
    was one, and any request that left 127.0.0.1."""

    preflights: list[tuple[str, int, str | None]] = field(default_factory=list)
    responses: list[tuple[str, str, int]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    cors_errors: list[tuple[str, str]] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def settled(self, paths: list[str]) -> bool:
        seen = {p for _, p, _ in self.responses} | {p for _, p, _ in self.failures}
        return all(path in seen for path in paths)


def visit(url: str, *, api_url: str, api_paths: list[str]) -> NetworkLog:
    """Open `url` in Chromium and wait (bounded) until the page's script has settled and each
    of `api_paths` was answered or failed at least once. The browser is closed on return:
    Django's ORM refuses to run while Playwright's event loop is up in this thread."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    log = NetworkLog()
    api_origin = api_url.rstrip("/")
    request_urls: dict[str, str] = {}

    def api_path(url: str) -> str | None:
        return urlsplit(url).path if url.startswith(api_origin + "/") else None

    def on_request(request: Any) -> None:
        if urlsplit(request.url).hostname != "127.0.0.1":
            log.offsite.append(request.url)

    def on_response(response: Any) -> None:
        path = api_path(response.url)
        if path is not None:
            log.responses.append((response.request.method, path, response.status))

    def on_failed(request: Any) -> None:
        path = api_path(request.url)
        if path is not None:
            log.failures.append((request.method, path, request.failure or ""))

    def on_cdp_request(event: dict[str, Any]) -> None:
        request_urls[event["requestId"]] = event["request"]["url"]

    def on_cdp_response(event: dict[str, Any]) -> None:
        # Playwright does not report preflights; Chromium's Network domain does
        path = api_path(event["response"]["url"])
        if path is not None and event.get("type") == "Preflight":
            headers = {name.lower(): value for name, value in event["response"]["headers"].items()}
            allow_origin = headers.get("access-control-allow-origin")
            log.preflights.append((path, event["response"]["status"], allow_origin))

    def on_cdp_failed(event: dict[str, Any]) -> None:
        path = api_path(request_urls.get(event["requestId"], ""))
        cors = event.get("corsErrorStatus")
        if path is not None and cors:
            log.cors_errors.append((path, cors["corsError"]))

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
            )
        except Exception as error:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {error}", pytrace=False)
        try:
            context = browser.new_context()
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            page = context.new_page()
            page.on("request", on_request)
            page.on("response", on_response)
            page.on("requestfailed", on_failed)
            page.on("console", lambda message: log.console.append(message.text))
            page.on("pageerror", lambda error: log.console.append(f"pageerror: {error}"))
            cdp = context.new_cdp_session(page)
            cdp.on("Network.requestWillBeSent", on_cdp_request)
            cdp.on("Network.responseReceived", on_cdp_response)
            cdp.on("Network.loadingFailed", on_cdp_failed)
            cdp.send("Network.enable")
            page.goto(url)
            page.wait_for_function("window.cdpDone === true")
            deadline = time.monotonic() + BROWSER_WAIT_SECONDS
            while not log.settled(api_paths) and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            # Chromium's own loadingFailed event may trail Playwright's requestfailed
            page.wait_for_timeout(300)
        finally:
            browser.close()
    return log


def wait_for(predicate: Callable[[], bool], *, timeout: float = DB_WAIT_SECONDS) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
