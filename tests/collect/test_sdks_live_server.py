"""The real Python SDKs over real sockets: segment-analytics-python and rudder-sdk-python (which
gzips by default) send identify, track, page, alias and batches to a live server; the stored
profiles, merges and events are what the calls mean, and a resent batch stores nothing new."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from profiles import services
from profiles.models import Event, Identity, Merge, Profile

SDKS = {
    "segment": ("segment.analytics", {}),
    "rudder": ("rudderstack.analytics", {"gzip": True}),
}


@pytest.fixture(autouse=True)
def _sdk_connections_closed() -> Iterator[None]:
    """Both SDKs send through a module-level `requests` session that keeps its connection to the
    live server open. The live server answers each connection on a thread of its own, which
    closes its database connections when the client hangs up; left open, the sockets closed only
    at interpreter exit, after the live server had stopped sharing the in-memory test database's
    connection with its threads, and each thread printed a "DatabaseWrapper objects created in a
    thread" traceback. Closed after each test, while the server still shares it."""
    yield
    for module, _options in SDKS.values():
        importlib.import_module(f"{module}.request")._session.close()


@pytest.fixture
def live_source(live_server: Any, transactional_db: Any) -> Any:
    workspace = services.workspace_create(slug="live", name="Live")
    return services.source_create(workspace=workspace, name="Server", kind="server")


def sdk(name: str, write_key: str, host: str) -> Any:
    module, options = SDKS[name]
    client_class = importlib.import_module(f"{module}.client").Client
    return client_class(write_key, host=host, max_retries=1, timeout=10, **options)


def active_profiles() -> list[Profile]:
    return list(Profile.objects.filter(status="active"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SDKS))
def test_sdk_calls_are_resolved_into_profiles(
    name: str, live_server: Any, live_source: Any
) -> None:
    # given
    client = sdk(name, live_source.write_key, live_server.url)
    # when: a shopper browses on two devices, logs in on both, and an old id is aliased
    client.page(anonymous_id="phone-1", name="Home", properties={"path": "/"})
    client.track(anonymous_id="laptop-1", event="Product Viewed", properties={"sku": "s-1"})
    client.identify(
        user_id="shopper-1",
        anonymous_id="phone-1",
        traits={"email": "Shopper.One@example.com", "plan": "member"},
    )
    client.identify(user_id="shopper-1", anonymous_id="laptop-1")
    client.track(anonymous_id="old-cookie", event="Newsletter Opened")
    client.alias(previous_id="old-cookie", user_id="shopper-1")
    client.flush()
    client.join()
    # then
    [profile] = active_profiles()
    assert sorted(Identity.objects.values_list("identifier_type", flat=True)) == [
        "anonymous_id",
        "anonymous_id",
        "anonymous_id",
        "email",
        "user_id",
    ]
    assert Identity.objects.get(identifier_type="email").value == "shopper.one@example.com"
    assert Identity.objects.filter(profile=profile).count() == 5
    assert Merge.objects.count() == 2
    assert sorted(Event.objects.filter(profile=profile).values_list("type", flat=True)) == [
        "alias",
        "identify",
        "identify",
        "page",
        "track",
        "track",
    ]
    assert profile.attributes == {"plan": "member"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SDKS))
def test_a_resent_batch_stores_nothing_new(name: str, live_server: Any, live_source: Any) -> None:
    # given: the SDK's own request function, as its consumer thread calls it on a retry
    post = importlib.import_module(f"{SDKS[name][0]}.request").post
    gzip = SDKS[name][1].get("gzip", False)
    batch = [
        {"type": "track", "event": f"Event {i}", "anonymousId": "a-1", "messageId": f"m-{i}"}
        for i in range(20)
    ]
    # when
    first = post(live_source.write_key, host=live_server.url, gzip=gzip, batch=batch)
    again = post(live_source.write_key, host=live_server.url, gzip=gzip, batch=batch)
    # then
    assert first.status_code == again.status_code == 200
    assert again.json() == {"success": True}
    assert Event.objects.count() == 20
    assert len(active_profiles()) == 1
