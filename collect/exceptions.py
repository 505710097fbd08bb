"""Collection errors. Each answers `{"code", "message"}`: the legacy Segment and RudderStack
Python clients read exactly those two keys and treat any other body as a network error (which
they retry). Messages never carry personal data or the write key."""

from __future__ import annotations

from cdp.core.exceptions import ApplicationError
from cdp.core.exceptions import RateLimited as CoreRateLimited


class CollectError(ApplicationError):
    """Base of collection errors; `headers` are added to the HTTP answer."""

    headers: dict[str, str] = {}


class MissingWriteKey(CollectError):
    code = "missing_write_key"
    status = 401
    default_message = "No write key: send it as the HTTP Basic username or as writeKey in the body."


class InvalidWriteKey(CollectError):
    code = "invalid_write_key"
    status = 401
    default_message = "The write key is not valid."


class SourceDisabled(CollectError):
    code = "source_disabled"
    status = 403
    default_message = "This source is disabled."


class OriginNotAllowed(CollectError):
    code = "origin_not_allowed"
    status = 403
    default_message = "This source does not accept requests from this origin."


# The per-source limit is shared with the consent API (cdp.core.ratelimit).
RateLimited = CoreRateLimited


class RequestTooLarge(CollectError):
    # Segment answers 400 (not 413) for oversize payloads; the SDKs expect that.
    code = "request_too_large"
    status = 400
    default_message = "The request body is too large."


class MalformedJson(CollectError):
    code = "malformed_json"
    status = 400
    default_message = "The request body is not valid JSON."


class MalformedBody(CollectError):
    code = "malformed_body"
    status = 400
    default_message = "The request body could not be decoded."


class UnsupportedEncoding(CollectError):
    code = "unsupported_encoding"
    status = 415
    default_message = "Unsupported Content-Encoding; send gzip, deflate or none."


class InvalidPayload(CollectError):
    code = "invalid_payload"
    status = 400
    default_message = "The request body is not a valid message."


class UnknownEndpoint(CollectError):
    code = "not_found"
    status = 404
    default_message = "No such collection endpoint."
