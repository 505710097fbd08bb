"""Webhook destinations: signing and the receivers' check, and delivery with retries against a
real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activation import webhooks
from activation.webhooks import (
    RetryPolicy,
    WebhookSignatureInvalid,
    WebhookUrlInvalid,
    build_request,
    parse_retry_after,
    send,
    sign,
    validate_webhook_url,
    verify_signature,
)

SECRET = "whsec_test_secret"
PAYLOAD = {"profile": "p_1", "event": "audience.entered"}
BODY = b'{"event":"audience.entered","profile":"p_1"}'
# printf '%s' '1700000000.{"event":"audience.entered","profile":"p_1"}' \
#   | openssl dgst -sha256 -hmac 'whsec_test_secret'
GOLDEN_V1 = "fc441fa243726b4a8953c28811738db344070ac0941963d6eb72118802d1b637"


# --- a scripted receiver on 127.0.0.1 --------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    reply = receiver.script.pop(0) if receiver.script else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cdp"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


class Sleeps(list[float]):
    """Records the waits `send` asks for instead of sleeping (the server is real, time isn't)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fast_policy(**overrides: object) -> RetryPolicy:
    values: dict[str, object] = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
    values.update(overrides)
    return RetryPolicy(**values)  # type: ignore[arg-type]


# --- signing -----------------------------------------------------------------------------------


def test_signature_golden_vector():
    # given a fixed body, timestamp and secret
    # when signed
    header = sign(BODY, secrets=SECRET, timestamp=1_700_000_000)
    # then the value computed independently with openssl
    assert header == f"t=1700000000,v1={GOLDEN_V1}"


def test_build_request_headers_and_body():
    request = build_request(
        url="https://hooks.example.com/cdp",
        payload=PAYLOAD,
        secrets=SECRET,
        delivery_id="dlv_01",
        timestamp=1_700_000_000,
    )
    assert request.body == BODY  # compact JSON, sorted keys
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-CDP-Signature"] == f"t=1700000000,v1={GOLDEN_V1}"
    assert request.headers["Idempotency-Key"] == "dlv_01"
    assert request.headers["X-CDP-Delivery"] == "dlv_01"
    assert request.payload_sha256 == hashlib.sha256(BODY).hexdigest()
    assert "p_1" not in repr(request)


def test_build_request_requires_a_delivery_id_and_a_secret():
    with pytest.raises(ValueError):
        build_request(url="https://x.example.com", payload={}, secrets=SECRET, delivery_id="")
    with pytest.raises(ValueError):
        build_request(url="https://x.example.com", payload={}, secrets="", delivery_id="d")


def test_rotation_signs_with_every_secret():
    header = sign(BODY, secrets=["old-secret", SECRET], timestamp=1_700_000_000)
    old = hmac.new(b"old-secret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={old},v1={GOLDEN_V1}"


# --- the receivers' check --------------------------------------------------------------------


def test_verify_accepts_a_valid_signature_within_tolerance():
    header = f"t=1700000000,v1={GOLDEN_V1}"
    assert verify_signature(body=BODY, header=header, secrets=SECRET, now=1_700_000_299) == (
        1_700_000_000
    )


def test_verify_accepts_any_of_the_receivers_secrets():
    header = f"t=1700000000,v1={GOLDEN_V1}"
    verify_signature(body=BODY, header=header, secrets=["new", SECRET], now=1_700_000_000)


@pytest.mark.parametrize(
    ("body", "header", "secret", "now", "code"),
    [
        (BODY + b" ", f"t=1700000000,v1={GOLDEN_V1}", SECRET, 1_700_000_000, "signature_mismatch"),
        (BODY, f"t=1700000000,v1={GOLDEN_V1}", "wrong", 1_700_000_000, "signature_mismatch"),
        (BODY, f"t=1700000001,v1={GOLDEN_V1}", SECRET, 1_700_000_000, "signature_mismatch"),
        (BODY, f"t=1700000000,v1={GOLDEN_V1}", SECRET, 1_700_000_301, "signature_expired"),
        (BODY, f"t=1700000000,v1={GOLDEN_V1}", SECRET, 1_699_999_699, "signature_expired"),
        (BODY, f"v1={GOLDEN_V1}", SECRET, 1_700_000_000, "signature_malformed"),
        (BODY, "t=1700000000", SECRET, 1_700_000_000, "signature_malformed"),
        (BODY, f"t=abc,v1={GOLDEN_V1}", SECRET, 1_700_000_000, "signature_malformed"),
        (BODY, f"t=\u00b2,v1={GOLDEN_V1}", SECRET, 1_700_000_000, "signature_malformed"),
        (BODY, f"t=1700000000,v0={GOLDEN_V1}", SECRET, 1_700_000_000, "signature_malformed"),
        (BODY, "", SECRET, 1_700_000_000, "signature_missing"),
        (BODY, None, SECRET, 1_700_000_000, "signature_missing"),
    ],
)
def test_verify_refuses(body, header, secret, now, code):
    with pytest.raises(WebhookSignatureInvalid) as info:
        verify_signature(body=body, header=header, secrets=secret, now=now)
    assert info.value.code == code


def test_verify_tolerance_is_configurable():
    header = f"t=1700000000,v1={GOLDEN_V1}"
    with pytest.raises(WebhookSignatureInvalid):
        verify_signature(body=BODY, header=header, secrets=SECRET, tolerance=10, now=1_700_000_011)


# --- delivery against a real server ------------------------------------------------------------


def test_send_delivers_a_signed_request_the_receiver_can_verify(receiver):
    # given a signed request
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="dlv_ok")
    # when sent
    result = send(request, policy=fast_policy())
    # then delivered in one attempt, and the receiver's own check passes on what it got
    assert (result.delivered, result.status_code, result.attempts, result.error) == (
        True,
        200,
        1,
        None,
    )
    got = receiver.received[0]
    assert got.path == "/hooks/cdp"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Idempotency-Key"] == "dlv_ok"
    assert json.loads(got.body) == PAYLOAD
    verify_signature(body=got.body, header=got.headers["X-CDP-Signature"], secrets=SECRET)


def test_send_retries_503_then_succeeds_with_the_same_request(receiver):
    receiver.script = [Reply(503), Reply(503), Reply(200)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d1")
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(), sleep=sleeps, rng=lambda: 0.5)
    assert (result.delivered, result.attempts, result.status_code) == (True, 3, 200)
    assert [a.status_code for a in result.history] == [503, 503, 200]
    # equal jitter: cap/2 + 0.5·cap/2, caps 0.01 then 0.02
    assert sleeps == pytest.approx([0.0075, 0.015])
    # every attempt is the same delivery: same body and idempotency key, each attempt signed
    # (afresh, at the time it left) so that the receiver's check passes
    assert len({r.body for r in receiver.received}) == 1
    assert {r.headers["Idempotency-Key"] for r in receiver.received} == {"d1"}
    for got in receiver.received:
        verify_signature(body=got.body, header=got.headers["X-CDP-Signature"], secrets=SECRET)


def test_send_waits_for_retry_after_seconds(receiver):
    receiver.script = [Reply(503, {"Retry-After": "2"}), Reply(200)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d2")
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(), sleep=sleeps)
    assert result.delivered and result.attempts == 2
    assert sleeps == [2.0]


def test_send_honours_429_with_an_http_date_retry_after(receiver):
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    receiver.script = [Reply(429, {"Retry-After": format_datetime(when, usegmt=True)}), Reply(200)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d3")
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(), sleep=sleeps)
    assert result.delivered
    assert 27 <= sleeps[0] <= 30


def test_send_really_waits_between_attempts(receiver):
    receiver.script = [Reply(503, {"Retry-After": "1"}), Reply(200)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d4")
    result = send(request, policy=fast_policy())
    assert result.delivered
    first, second = receiver.received
    assert second.at - first.at >= 0.95


def test_send_gives_back_a_retry_after_beyond_the_cap(receiver):
    receiver.script = [Reply(503, {"Retry-After": "3600"})]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d5")
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(max_retry_after=60), sleep=sleeps)
    assert (result.delivered, result.attempts, result.retryable) == (False, 1, True)
    assert result.retry_after == 3600.0
    assert sleeps == []


def test_send_does_not_retry_a_400(receiver):
    receiver.script = [Reply(400), Reply(200)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d6")
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(), sleep=sleeps)
    assert (result.delivered, result.status_code, result.attempts) == (False, 400, 1)
    assert (result.error, result.retryable) == ("http_status", False)
    assert len(receiver.received) == 1
    assert sleeps == []


def test_send_retries_408_and_429(receiver):
    receiver.script = [Reply(408), Reply(429), Reply(204)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d7")
    result = send(request, policy=fast_policy(), sleep=Sleeps())
    assert (result.delivered, result.status_code, result.attempts) == (True, 204, 3)


def test_send_stops_after_max_attempts_with_a_retryable_result(receiver):
    receiver.script = [Reply(500)] * 5
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d8")
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(max_attempts=3), sleep=sleeps, rng=lambda: 1.0)
    assert (result.delivered, result.attempts, result.status_code) == (False, 3, 500)
    assert (result.error, result.retryable) == ("http_status", True)
    assert sleeps == pytest.approx([0.01, 0.02])
    assert len(receiver.received) == 3


def test_send_does_not_follow_redirects(receiver):
    receiver.script = [Reply(307, {"Location": "http://127.0.0.1:9/elsewhere"})]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d9")
    result = send(request, policy=fast_policy(), sleep=Sleeps())
    assert (result.delivered, result.status_code, result.error, result.retryable) == (
        False,
        307,
        "redirect",
        False,
    )
    assert len(receiver.received) == 1


def test_send_times_out_then_succeeds(receiver):
    receiver.script = [Reply(200, delay=1.0), Reply(200)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d10")
    result = send(request, policy=fast_policy(), timeout=0.2, sleep=Sleeps())
    assert result.delivered
    assert [a.error for a in result.history] == ["timeout", None]


def test_send_times_out_every_time(receiver):
    receiver.script = [Reply(200, delay=1.0), Reply(200, delay=1.0)]
    request = build_request(url=receiver.url, payload=PAYLOAD, secrets=SECRET, delivery_id="d11")
    result = send(request, policy=fast_policy(max_attempts=2), timeout=0.2, sleep=Sleeps())
    assert (result.delivered, result.attempts, result.error, result.retryable) == (
        False,
        2,
        "timeout",
        True,
    )
    assert result.status_code is None


def test_send_connection_refused_is_retryable():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    request = build_request(
        url=f"http://127.0.0.1:{port}/", payload=PAYLOAD, secrets=SECRET, delivery_id="d12"
    )
    sleeps = Sleeps()
    result = send(request, policy=fast_policy(max_attempts=2), sleep=sleeps)
    assert (result.delivered, result.attempts, result.error, result.retryable) == (
        False,
        2,
        "connect_error",
        True,
    )
    assert len(sleeps) == 1


def test_send_with_an_unusable_url_is_final():
    request = build_request(url="ftp://example.com/", payload={}, secrets=SECRET, delivery_id="d")
    result = send(request, policy=fast_policy(), sleep=Sleeps())
    assert (result.delivered, result.attempts, result.error, result.retryable) == (
        False,
        1,
        "invalid_url",
        False,
    )


def test_send_logs_no_payload(receiver, caplog):
    caplog.set_level("DEBUG", logger="activation.webhooks")
    receiver.script = [Reply(503), Reply(200)]
    payload = {"email": "sentinel.person@example.com"}
    request = build_request(url=receiver.url, payload=payload, secrets=SECRET, delivery_id="d13")
    send(request, policy=fast_policy(), sleep=Sleeps())
    assert "sentinel" not in caplog.text
    assert SECRET not in caplog.text


# --- policy pieces --------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_equal_jitter_and_a_cap():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert [policy.backoff(n, lambda: 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.backoff(n, lambda: 1.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_retry_statuses():
    policy = RetryPolicy()
    assert all(policy.should_retry_status(s) for s in (408, 429, 500, 502, 503, 504, 599))
    assert not any(policy.should_retry_status(s) for s in (400, 401, 403, 404, 409, 422, 301))


def test_policy_is_validated():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("\u00b2", None),  # a Unicode digit that float() refuses
        ("-5", None),
        ("", None),
        (None, None),
        # at most a day: a longer wait would stall a removal for good, or overflow
        ("99999999999999", 86400.0),
        ("9" * 400, 86400.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 86400.0),
    ],
)
def test_parse_retry_after(value, expected):
    now = dt.datetime(2015, 10, 21, 7, 28, 20, tzinfo=dt.UTC).timestamp()
    assert parse_retry_after(value, now=now) == expected


# --- URL policy -----------------------------------------------------------------------------------


def test_validate_webhook_url_accepts_public_https():
    assert (
        validate_webhook_url("https://hooks.example.com/cdp", resolve=lambda h: ["93.184.215.14"])
        == "https://hooks.example.com/cdp"
    )


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("http://hooks.example.com/cdp", ["93.184.215.14"]),  # not https
        ("https://user:pw@hooks.example.com/", ["93.184.215.14"]),  # credentials in the URL
        ("https:///nohost", []),
        ("https://127.0.0.1/", []),
        ("https://[::1]/", []),
        ("https://169.254.169.254/latest/meta-data", []),  # cloud metadata
        ("https://internal.example.com/", ["10.0.0.7"]),
        ("https://mixed.example.com/", ["93.184.215.14", "192.168.1.10"]),
        ("https://mapped.example.com/", ["::ffff:127.0.0.1"]),
        ("https://hooks.example.com:99999/", ["93.184.215.14"]),
    ],
)
def test_validate_webhook_url_refuses(url, addresses):
    with pytest.raises(WebhookUrlInvalid):
        validate_webhook_url(url, resolve=lambda host: addresses)


def test_validate_webhook_url_unresolvable_host():
    def fail(host: str) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(WebhookUrlInvalid):
        validate_webhook_url("https://nowhere.invalid/", resolve=fail)


def test_validate_webhook_url_local_when_allowed(receiver):
    assert validate_webhook_url(receiver.url, allow_http=True, allow_private=True) == receiver.url


def test_module_exports_the_wire_names():
    assert webhooks.SIGNATURE_HEADER == "X-CDP-Signature"
    assert webhooks.IDEMPOTENCY_HEADER == "Idempotency-Key"
