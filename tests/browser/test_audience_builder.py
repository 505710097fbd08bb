"""The audience builder in Debian's Chromium: a steward opens the admin's "add audience" page on
the live server, picks the workspace, types rules, and the page's script shows how many profiles
match and a sample with identifiers masked; a mistake shows the rule error with its JSON pointer.

Playwright's event loop and Django's ORM cannot share a thread: the database is set up and the
steward logged in (a session cookie handed to the browser) before Chromium starts, and nothing
is read back until it has closed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.activation.api_helpers import VIP, shopper
from tests.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LAUNCH_TIMEOUT_MS,
    PAGE_TIMEOUT_MS,
    require_chromium,
)

pytestmark = [
    pytest.mark.slow,
    # WhiteNoise, in the live server, notes that collectstatic has not run
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

BAD_RULES = {"all": [VIP, {"trait": {"key": "plan", "op": "="}}]}


def test_typing_rules_shows_the_size_and_a_masked_sample(
    live_server: Any, owner: Any, workspace: Any
) -> None:
    # given: two VIP shoppers and one other, and a logged-in audience steward
    people = [shopper(workspace), shopper(workspace)]
    shopper(workspace, plan="basic")
    client = Client()
    client.force_login(owner)
    session = client.cookies["sessionid"].value
    seen: dict[str, Any] = {}

    # when
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            context = browser.new_context()
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{live_server.url}/admin/activation/audience/add/")
            page.select_option("#id_workspace", str(workspace.pk))
            page.fill("#id_rules", json.dumps(VIP))
            page.wait_for_function(
                "document.getElementById('rules-preview-count').textContent === '2'"
            )
            seen["count"] = page.text_content("#rules-preview-count")
            seen["sample"] = page.inner_text("#rules-preview-sample tbody")
            seen["links"] = page.eval_on_selector_all(
                "#rules-preview-sample tbody a", "links => links.map(a => a.textContent)"
            )
            page.fill("#id_rules", json.dumps(BAD_RULES))
            page.wait_for_selector("#rules-preview-error:not([hidden])")
            seen["error"] = page.text_content("#rules-preview-error")
            seen["count_hidden"] = page.is_hidden("#rules-preview-result")
            seen["errors"] = errors
        finally:
            browser.close()

    # then
    assert seen["count"] == "2"
    assert sorted(seen["links"]) == sorted(str(p.profile_id) for p in people)
    assert "user_id ••••••" in seen["sample"]
    assert '"plan":"vip"' in seen["sample"]
    for who in people:
        for value in (who.user_id, who.anonymous_id, who.email):
            assert value not in seen["sample"]
    assert seen["error"].startswith("At /all/1/trait: ")
    assert "'value' is a required property" in seen["error"]
    assert seen["count_hidden"] is True
    assert seen["errors"] == []
