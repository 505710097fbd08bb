"""Webhook destinations: signed JSON requests, retries with backoff, and the receiver's check.

Wire format (documented for receivers in docs/destinations.md):

- `POST <url>` with `Content-Type: application/json` and the JSON body.
- `X-CDP-Signature: t=<unix seconds>,v1=<hex>`: `<hex>` is HMAC-SHA256 under the destination's
  secret of the bytes `<t>.<body>` (Stripe's scheme). While a secret is being rotated there is
  one `v1=` per secret. A receiver recomputes it over the raw body, compares in constant time
  and refuses a `t` further than its tolerance (5 minutes by default) from its clock, which
  stops replays (`verify_signature` does all three).
- `Idempotency-Key` and `X-CDP-Delivery`: the delivery id, the same on every retry of one
  delivery, so that a receiver can drop duplicates.

`send` retries 408, 429, every 5xx, timeouts and connection errors, with exponential backoff
and jitter, honouring `Retry-After`; it never follows redirects (a redirect could carry the
signed personal data elsewhere). Every attempt is signed afresh at the time it is sent (same
body, same idempotency key, new `t`), as Stripe does: a retry after a long `Retry-After` would
otherwise carry a timestamp the receiver refuses as expired. The waits of one `send` have a
total budget; when the next wait would pass it, `send` stops and hands the wait back, so that
the caller retries later rather than hold a worker. It returns a `WebhookResult` and never
raises for delivery failures: the caller decides from it whether to retry later or
dead-letter.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
import orjson

from cdp.core.exceptions import InvalidInput

__all__ = [
    "DELIVERY_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "Attempt",
    "RetryPolicy",
    "WebhookRequest",
    "WebhookResult",
    "WebhookSignatureInvalid",
    "WebhookUrlInvalid",
    "build_request",
    "encode_body",
    "parse_retry_after",
    "send",
    "sign",
    "validate_webhook_url",
    "verify_signature",
]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-CDP-Signature"
DELIVERY_HEADER = "X-CDP-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
# The waits of one `send` in all; past it the caller retries later (see RetryPolicy).
DEFAULT_MAX_TOTAL_WAIT_SECONDS = 120.0
USER_AGENT = "cdp-webhooks/1"
RETRYABLE_STATUSES = frozenset({408, 429, *range(500, 600)})


class WebhookSignatureInvalid(InvalidInput):
    """The receiver's check failed; `code` says why (never which secret or value)."""

    code = "invalid_signature"
    status = 401
    default_message = "The webhook signature is not valid."


class WebhookUrlInvalid(InvalidInput):
    code = "invalid_webhook_url"
    default_message = "The webhook URL is not allowed."


# --- request building and signing ------------------------------------------------------------


def encode_body(payload: object) -> bytes:
    """The JSON body: compact UTF-8 with sorted keys, so that one payload always gives the same
    bytes (and the same payload hash in the delivery ledger)."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _secrets(secrets: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    items = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    keys = [item.encode() if isinstance(item, str) else bytes(item) for item in items]
    if not keys or not all(keys):
        raise ValueError("a webhook secret must not be empty")
    return keys


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, *, secrets: str | bytes | Sequence[str | bytes], timestamp: int) -> str:
    """The `X-CDP-Signature` value: `t=<timestamp>,v1=<hex>[,v1=<hex>…]`, one `v1` per secret
    (several during a rotation: the receiver accepts any)."""
    parts = [f"t={int(timestamp)}"]
    parts += [
        f"{SIGNATURE_SCHEME}={_digest(key, int(timestamp), body)}" for key in _secrets(secrets)
    ]
    return ",".join(parts)


def verify_signature(
    *,
    body: bytes,
    header: str | None,
    secrets: str | bytes | Sequence[str | bytes],
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """For receivers: check `X-CDP-Signature` against the raw request body. Returns the signed
    timestamp; raises `WebhookSignatureInvalid` (code `signature_missing`,
    `signature_malformed`, `signature_expired` or `signature_mismatch`).

    Any of `secrets` may match (accept the old and the new one while rotating)."""
    if not header:
        raise WebhookSignatureInvalid("No signature header.", code="signature_missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == SIGNATURE_SCHEME and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise WebhookSignatureInvalid(
            "The signature header is malformed.", code="signature_malformed"
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookSignatureInvalid(
            f"The signature timestamp is outside the {tolerance} s tolerance.",
            code="signature_expired",
        )
    expected = [_digest(key, timestamp, body) for key in _secrets(secrets)]
    # Compare every pair, so that the time taken does not depend on which one matched.
    matched = False
    for candidate in candidates:
        for digest in expected:
            matched |= hmac.compare_digest(candidate, digest)
    if not matched:
        raise WebhookSignatureInvalid(
            "The signature does not match the body.", code="signature_mismatch"
        )
    return timestamp


@dataclass(frozen=True)
class WebhookRequest:
    """One delivery: `headers` as signed when it was built. With `secrets`, `send` signs each
    attempt again at the time it leaves (`headers_at`)."""

    url: str
    delivery_id: str
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    secrets: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def payload_sha256(self) -> str:
        """SHA-256 of the exact bytes sent: the payload hash for the delivery ledger."""
        return hashlib.sha256(self.body).hexdigest()

    def headers_at(self, timestamp: int) -> dict[str, str]:
        """The headers of an attempt sent at `timestamp`: the same body, delivery id and
        idempotency key, signed for that time (unchanged when the request has no secrets)."""
        headers = dict(self.headers)
        if self.secrets:
            headers[SIGNATURE_HEADER] = sign(self.body, secrets=self.secrets, timestamp=timestamp)
        return headers


def build_request(
    *,
    url: str,
    payload: object,
    secrets: str | bytes | Sequence[str | bytes],
    delivery_id: str,
    timestamp: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """The signed request for one delivery. Build it once and retry the same object: the body
    and idempotency key stay identical across attempts, and `send` signs each attempt again
    with the time it leaves, so that no retry carries an expired timestamp."""
    if not delivery_id:
        raise ValueError("delivery_id is required (it is the idempotency key)")
    keys = tuple(_secrets(secrets))
    body = encode_body(payload)
    signed_at = int(time.time()) if timestamp is None else int(timestamp)
    headers = dict(extra_headers or {})
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(body, secrets=keys, timestamp=signed_at),
            IDEMPOTENCY_HEADER: delivery_id,
            DELIVERY_HEADER: delivery_id,
        }
    )
    return WebhookRequest(
        url=url, delivery_id=delivery_id, body=body, headers=headers, secrets=keys
    )


# --- URL policy ------------------------------------------------------------------------------


def _blocked_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def validate_webhook_url(
    url: str,
    *,
    allow_http: bool = False,
    allow_private: bool = False,
    resolve: Callable[[str], list[str]] | None = None,
) -> str:
    """Check a destination URL when it is configured: `https` (plain `http` only when
    allowed), a host, no credentials in the URL, and (unless `allow_private`) no loopback,
    private, link-local or otherwise non-public address, so that a webhook cannot be pointed
    at the CDP's own network. `resolve(host)` returns the host's addresses (DNS by default)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for an out-of-range port
    except ValueError as exc:
        raise WebhookUrlInvalid("The webhook URL cannot be parsed.") from exc
    if parts.scheme not in ({"https", "http"} if allow_http else {"https"}):
        raise WebhookUrlInvalid(
            "A webhook URL must use https." if not allow_http else "Use http or https."
        )
    if not parts.hostname:
        raise WebhookUrlInvalid("The webhook URL has no host.")
    if parts.username or parts.password:
        raise WebhookUrlInvalid("Credentials do not belong in a webhook URL; use the secret.")
    if not allow_private:
        host = parts.hostname
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = (resolve or _resolve)(host)
            except OSError as exc:
                raise WebhookUrlInvalid("The webhook host does not resolve.") from exc
        if not addresses or any(_blocked_address(address) for address in addresses):
            raise WebhookUrlInvalid("The webhook host is not a public address.")
    return url


def _resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


# --- retry policy and sending ------------------------------------------------------------------


# A receiver's Retry-After is honoured up to a day: a longer one (a date years ahead, a number
# of 400 digits) would stall a removal for good or overflow the date arithmetic after it.
MAX_RETRY_AFTER_SECONDS = 86400.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds (`120`) or an HTTP date, at most a day
    (MAX_RETRY_AFTER_SECONDS); None if absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # float() refuses other Unicode digits ("²")
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: before retry n (n ≥ 1) the wait is drawn uniformly
    from [cap/2, cap] with cap = min(max_delay, base_delay · 2^(n-1)) ("equal jitter": spread
    out, yet never shorter than half the exponential step). A `Retry-After` from the server
    replaces the backoff; one longer than `max_retry_after` ends the attempts (the result
    carries it so the caller can reschedule). So does a wait that would take the waits of one
    `send` past `max_total_wait` in all: a worker is not held longer than that."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    max_total_wait: float = DEFAULT_MAX_TOTAL_WAIT_SECONDS
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after, self.max_total_wait) < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        cap = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        return cap / 2 + rng() * cap / 2

    def should_retry_status(self, status: int) -> bool:
        return status in self.retry_statuses


@dataclass(frozen=True)
class Attempt:
    number: int
    status_code: int | None
    error: str | None
    duration: float
    wait: float  # seconds slept before the next attempt (0 after the last)


@dataclass(frozen=True)
class WebhookResult:
    """`delivered` on a 2xx. Otherwise `error` is `http_status` (see `status_code`),
    `redirect`, `timeout`, `connect_error`, `network_error` or `invalid_url`; `retryable`
    says whether the last failure was transient (worth another try later) or final (dead
    letter); `retry_after`, when set, is the wait still owed when `send` stopped early (a
    `Retry-After` beyond the policy's cap, or a wait past its total budget): the caller should
    try again that much later, not dead-letter; `asked` says whether the receiver asked for
    that wait (`Retry-After`) or our own backoff ran past the budget."""

    delivered: bool
    status_code: int | None
    attempts: int
    error: str | None
    retryable: bool
    retry_after: float | None = None
    history: tuple[Attempt, ...] = ()
    asked: bool = False


def _client(timeout: float) -> httpx.Client:
    # No proxies or .netrc from the environment, and never follow redirects.
    return httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False)


def _attempt(
    client: httpx.Client, request: WebhookRequest, headers: dict[str, str]
) -> tuple[int | None, str | None, str]:
    """One POST: (status code, error code, Retry-After header). The response body is not read
    beyond what closing the stream requires: receivers answer with a status, not content."""
    try:
        with client.stream("POST", request.url, content=request.body, headers=headers) as response:
            return response.status_code, None, response.headers.get("Retry-After", "")
    except httpx.TimeoutException:
        return None, "timeout", ""
    except httpx.ConnectError:
        return None, "connect_error", ""
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return None, "invalid_url", ""
    except httpx.TransportError:
        return None, "network_error", ""


def send(
    request: WebhookRequest,
    *,
    policy: RetryPolicy | None = None,
    timeout: float = 10.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.time,
) -> WebhookResult:
    """Deliver `request`, retrying transient failures under `policy`, each attempt signed at
    `clock()`; never raises for a failed delivery. `client` lets the caller share a connection
    pool (it must not follow redirects); `sleep`, `rng` and `clock` are injectable for tests."""
    policy = policy or RetryPolicy()
    own_client = client is None
    http = client or _client(timeout)
    history: list[Attempt] = []
    host = urlsplit(request.url).hostname or "?"
    waited = 0.0
    try:
        for number in range(1, policy.max_attempts + 1):
            started = time.monotonic()
            headers = request.headers_at(int(clock()))
            status, error, retry_after_header = _attempt(http, request, headers)
            duration = time.monotonic() - started
            if status is not None and 200 <= status < 300:
                history.append(Attempt(number, status, None, duration, 0.0))
                logger.info(
                    "webhook delivered",
                    extra={"delivery_id": request.delivery_id, "host": host, "attempt": number},
                )
                return WebhookResult(True, status, number, None, False, None, tuple(history))
            if status is not None:
                error = "redirect" if 300 <= status < 400 else "http_status"
                retryable = policy.should_retry_status(status)
            else:
                retryable = error != "invalid_url"
            retry_after = parse_retry_after(retry_after_header) if status is not None else None
            last = number == policy.max_attempts
            owed: float | None = None  # a wait handed back to the caller
            wait = 0.0
            if retryable:
                wait = retry_after if retry_after is not None else policy.backoff(number, rng)
                # A wait beyond the cap, or past the budget of the whole send, is handed back:
                # the caller tries again that much later instead of holding a worker.
                if (retry_after or 0) > policy.max_retry_after or (
                    not last and waited + wait > policy.max_total_wait
                ):
                    owed = wait
            if not retryable or last or owed is not None:
                history.append(Attempt(number, status, error, duration, 0.0))
                logger.warning(
                    "webhook not delivered",
                    extra={
                        "delivery_id": request.delivery_id,
                        "host": host,
                        "attempt": number,
                        "status": status,
                        "error": error,
                    },
                )
                return WebhookResult(
                    False,
                    status,
                    number,
                    error,
                    retryable,
                    owed,
                    tuple(history),
                    asked=owed is not None and retry_after is not None,
                )
            history.append(Attempt(number, status, error, duration, wait))
            waited += wait
            sleep(wait)
    finally:
        if own_client:
            http.close()
    raise AssertionError("unreachable: the loop returns on its last attempt")
