"""Collection errors. Each answers `{"code", "message"}`: the legacy Segment and RudderStack
Python clients read exactly those two keys and treat any other body as a network error (which
they retry). Messages never carry personal data or the write key."""

from __future__ import annotations

from cdp.core.api.write_key import OriginNotAllowed as CoreOriginNotAllowed
from cdp.core.api.write_key import SourceDisabled as CoreSourceDisabled
from cdp.core.api.write_key import WriteKeyInvalid, WriteKeyMissing
from cdp.core.exceptions import ApplicationError
from cdp.core.exceptions import RateLimited as CoreRateLimited


class CollectError(ApplicationError):
    """Base of collection errors; `headers` are added to the HTTP answer."""

    headers: dict[str, str] = {}


# The write-key errors are the shared ones of every public write-key route.
MissingWriteKey = WriteKeyMissing
InvalidWriteKey = WriteKeyInvalid
SourceDisabled = CoreSourceDisabled
OriginNotAllowed = CoreOriginNotAllowed
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
