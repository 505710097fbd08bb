"""One Segment-spec message (a JSON object) -> `InboundMessage`, or a `MessageError`.

Accepts the union of what real clients send (see docs in the shared reference, section 1):

- `userId` / `anonymousId` as strings or numbers (numbers become strings), explicit `null`s
  (the Segment Python clients send them); at least one of the two is required;
- identify traits at the top level or in `context.traits` (RudderStack), top level winning;
- `timestamp` or `originalTimestamp` (RudderStack JS), corrected for client clock skew with
  `sentAt` as Segment does: `timestamp = receivedAt - (sentAt - originalTimestamp)`;
- batch-level `context`, `integrations` and `sentAt`, merged under each item's own.

Error codes (one per message): `invalid_message`, `event_too_large`, `invalid_type`,
`invalid_field`, `missing_identity`, `identity_verification_required` (a userId without
its userHash and no anonymousId, where the source verifies identities), `missing_event`,
`missing_previous_id`, `missing_group_id`, `invalid_message_id`, `invalid_timestamp`.
Messages name the field, never its value, so they can be logged and returned without
carrying personal data. A message is also refused, on its own, when it cannot be stored as
sent: a NUL character anywhere, or nesting deeper than 200 levels.

Identity verification: `context.userHash` is removed from every message (it is a linkable
pseudonym of the userId). Where the source verifies identities, a message whose userHash is
not the HMAC of its userId as sent keeps no userId and is marked `identity_verified=False`;
it is not refused (see `profiles.ingest._raw_identifiers` for what it may still join).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

from profiles.contracts import InboundMessage
from profiles.enums import EventType
from profiles.selectors import UserHashCheck

DEFAULT_MAX_EVENT_BYTES = 32 * 1024
MAX_MESSAGE_ID_LENGTH = 128

# Path segments of the single-message endpoints and the message type each stands for.
TYPE_BY_PATH = {
    "identify": EventType.IDENTIFY,
    "i": EventType.IDENTIFY,
    "track": EventType.TRACK,
    "t": EventType.TRACK,
    "page": EventType.PAGE,
    "p": EventType.PAGE,
    "screen": EventType.SCREEN,
    "s": EventType.SCREEN,
    "group": EventType.GROUP,
    "g": EventType.GROUP,
    "alias": EventType.ALIAS,
    "a": EventType.ALIAS,
}


@dataclass(frozen=True)
class RequestMeta:
    """What the HTTP request adds to each of its messages."""

    received_at: datetime
    ip: str | None = None
    # batch-level `sentAt`, else RudderStack's `SentAt` header (raw, parsed per message)
    sent_at: Any = None
    context: dict[str, Any] = field(default_factory=dict)  # batch-level, merged under each
    integrations: dict[str, Any] = field(default_factory=dict)
    message_type: str | None = None  # from the path of a single-message endpoint
    gpc: bool = False  # the `Sec-GPC: 1` header; see collect.consent_signals


@dataclass(frozen=True)
class MessageError:
    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def max_event_bytes() -> int:
    return int(getattr(settings, "COLLECT_MAX_EVENT_BYTES", DEFAULT_MAX_EVENT_BYTES))


def validate_message(
    raw: object,
    *,
    index: int,
    meta: RequestMeta,
    max_bytes: int | None = None,
    user_hash_check: UserHashCheck | None = None,
) -> InboundMessage | MessageError:
    """Validate and normalize one message; never raises for bad input. `max_bytes` is the
    size limit (`max_event_bytes()` when not given: a batch reads the setting once, not per
    message). `user_hash_check` is the source's identity verification (None where it has
    none): a message whose `context.userHash` does not prove its userId keeps no userId and
    is marked `identity_verified=False`. `context.userHash` is never stored."""
    try:
        return _validate(
            raw,
            index=index,
            meta=meta,
            limit=max_event_bytes() if max_bytes is None else max_bytes,
            user_hash_check=user_hash_check,
        )
    except _Invalid as exc:
        return MessageError(index=index, code=exc.code, message=exc.message)


def _validate(
    raw: object,
    *,
    index: int,
    meta: RequestMeta,
    limit: int,
    user_hash_check: UserHashCheck | None,
) -> InboundMessage:
    if not isinstance(raw, dict):
        raise _Invalid("invalid_message", "A message must be a JSON object.")
    encoded = _encoded(raw)
    if len(encoded) > limit:
        raise _Invalid("event_too_large", f"The message is larger than {limit} bytes.")
    if b"\\u0000" in encoded and _holds_nul(raw):
        raise _Invalid(
            "invalid_field", "The message holds a NUL character (\\u0000), which cannot be stored."
        )

    message_type = _message_type(raw.get("type"), meta.message_type)
    user_id = _identifier(raw.get("userId"), "userId")
    anonymous_id = _identifier(raw.get("anonymousId"), "anonymousId")
    if user_id is None and anonymous_id is None:
        raise _Invalid("missing_identity", "A message needs a userId or an anonymousId.")

    properties = _object(raw.get("properties"), "properties")
    traits = _object(raw.get("traits"), "traits")
    context = {**meta.context, **_object(raw.get("context"), "context")}
    # A keyed hash of the userId is a pseudonym that links the person across requests: it is
    # checked here and never stored, whether or not the source verifies identities.
    user_hash = context.pop("userHash", None)
    integrations = {**meta.integrations, **_object(raw.get("integrations"), "integrations")}
    if integrations:
        # The contract has no slot of its own for destination switches; they travel in
        # context (they are not personal data) so activation can honour them.
        context["integrations"] = integrations
    context_traits = _object(context.get("traits"), "context.traits")

    name = ""
    previous_id = group_id = None
    if message_type == EventType.TRACK:
        event = raw.get("event")
        if event is None or (isinstance(event, str) and not event.strip()):
            raise _Invalid("missing_event", "A track message needs an event name.")
        name = _string(event, "event")
    elif message_type in (EventType.PAGE, EventType.SCREEN):
        name = _string(raw.get("name"), "name")
        category = raw.get("category")  # legacy page field; kept as a property
        if category is not None and "category" not in properties:
            properties = {**properties, "category": category}
    elif message_type == EventType.IDENTIFY:
        traits = {**context_traits, **traits}
    elif message_type == EventType.GROUP:
        group_id = _identifier(raw.get("groupId"), "groupId")
        if group_id is None:
            raise _Invalid("missing_group_id", "A group message needs a groupId.")
        # Group traits describe the group (company), not the person: they are stored with
        # the event, never as the profile's traits.
        properties = {**properties, **traits}
    elif message_type == EventType.ALIAS:
        previous_id = _identifier(raw.get("previousId"), "previousId")
        if previous_id is None:
            raise _Invalid("missing_previous_id", "An alias message needs a previousId.")
    if message_type != EventType.IDENTIFY:
        traits = {}

    received_at = meta.received_at
    original = _timestamp(raw.get("timestamp"), "timestamp") or _timestamp(
        raw.get("originalTimestamp"), "originalTimestamp"
    )
    sent_at = _timestamp(raw.get("sentAt"), "sentAt") or _timestamp(meta.sent_at, "sentAt")
    try:
        if original is not None and sent_at is not None:
            timestamp = received_at - (sent_at - original)
        else:
            timestamp = original or received_at
    except OverflowError:
        raise _Invalid("invalid_timestamp", "timestamp is out of range.") from None

    context_ip = context.get("ip")
    ip = context_ip.strip() if isinstance(context_ip, str) and context_ip.strip() else meta.ip

    identity_verified = True
    if user_hash_check is not None:
        # The hash covers the userId as sent; a string with surrounding whitespace is not the
        # userId profiles index, and the check refuses it.
        sent = raw.get("userId")
        identity_verified = user_id is not None and user_hash_check(
            sent if isinstance(sent, str) else user_id, user_hash
        )
        if not identity_verified:
            if anonymous_id is None and previous_id is None and not _device_ids(context):
                # Nothing of its own browser or device to store it under (what
                # profiles.ingest._browser_identifiers may use): refused, as a message without
                # any id is (a server-side sender belongs on a source that does not verify).
                raise _Invalid(
                    "identity_verification_required",
                    "This source verifies identities: a message with a userId and no "
                    "anonymousId (nor device id) must carry context.userHash, the "
                    "HMAC-SHA256 of the userId under the source's secret.",
                )
            # Kept (the collection contract answers 200), but claiming no one: an alias is
            # left with its previousId alone, and the event goes to the browser's profile.
            user_id = None

    return InboundMessage(
        type=message_type,
        message_id=_message_id(raw.get("messageId")),
        received_at=received_at,
        timestamp=timestamp,
        original_timestamp=original,
        sent_at=sent_at,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        group_id=group_id,
        name=name,
        properties=properties,
        traits=traits,
        context=context,
        ip=ip or None,
        gpc=meta.gpc,
        identity_verified=identity_verified,
        index=index,
    )


def _encoded(raw: dict[str, Any], what: str = "The message") -> bytes:
    """The message as the intake buffer and the event store write it (orjson): what orjson
    cannot write is refused here, one message, rather than failing its whole batch later."""
    wrapped: Any = raw
    for _ in range(_MARGIN):
        wrapped = [wrapped]
    try:
        # The stores nest a message deeper than it came (the intake buffer's list, batch
        # context and integrations under its context): encoded with that margin, as one.
        return orjson.dumps(wrapped)[_MARGIN:-_MARGIN]
    except orjson.JSONEncodeError as exc:
        if "recursion" in str(exc).lower():
            raise _Invalid(
                "invalid_message", f"{what} is nested more than {_MAX_NESTING} levels deep."
            ) from None
        raise _Invalid("invalid_message", f"{what} cannot be written as JSON.") from None


def unstorable(value: dict[str, Any], what: str) -> str | None:
    """Why `value` (a batch's shared context, say) cannot be stored as sent, or None: the
    checks every message gets besides its size."""
    try:
        encoded = _encoded(value, what)
    except _Invalid as exc:
        return exc.message
    if b"\\u0000" in encoded and _holds_nul(value):
        return f"{what} holds a NUL character (\\u0000), which cannot be stored."
    return None


_MARGIN = 55
_MAX_NESTING = 255 - _MARGIN  # orjson writes no deeper than 255 levels


def _holds_nul(value: object) -> bool:
    """Whether a NUL character is in any key or string: PostgreSQL stores none, in text or
    JSON. (The encoded message's `\\u0000` can also be an escaped backslash before "u0000".)"""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


# `EventType.values` builds its list anew on every read (once per message, it showed in the
# request profile).
_EVENT_TYPES = frozenset(EventType.values)


def _message_type(value: object, from_path: str | None) -> str:
    given = value.strip().lower() if isinstance(value, str) else value
    if from_path is not None:
        if given not in (None, "", from_path):
            raise _Invalid("invalid_type", f"The message type does not match /{from_path}.")
        return from_path
    if not isinstance(given, str) or given not in _EVENT_TYPES:
        raise _Invalid("invalid_type", f"type must be one of: {', '.join(sorted(_EVENT_TYPES))}.")
    return given


def _identifier(value: object, name: str) -> str | None:
    """A string or a number (clients send numeric user ids); null and "" mean absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Invalid("invalid_field", f"{name} must be a string or a number.")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("invalid_field", f"{name} must be a string or a number.")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip() or None
    raise _Invalid("invalid_field", f"{name} must be a string or a number.")


def _string(value: object, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid("invalid_field", f"{name} must be a string.")
    return value.strip()


def _object(value: object, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("invalid_field", f"{name} must be an object.")
    return value


def _timestamp(value: object, name: str) -> datetime | None:
    """ISO-8601 in any of the variants clients send (`Z` or offset, ms or µs); naive means UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid("invalid_timestamp", f"{name} must be an ISO-8601 string.")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid("invalid_timestamp", f"{name} is not an ISO-8601 timestamp.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _message_id(value: object) -> str:
    if value is None or value == "":
        return str(uuid.uuid4())
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid("invalid_message_id", "messageId must be a string.")
    message_id = str(value).strip()
    if not message_id:
        return str(uuid.uuid4())
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise _Invalid(
            "invalid_message_id", f"messageId is longer than {MAX_MESSAGE_ID_LENGTH} characters."
        )
    return message_id


def _device_ids(context: dict[str, Any]) -> bool:
    """Whether the context names a device (`device.id` or `device.advertisingId`)."""
    device = context.get("device")
    return isinstance(device, dict) and (
        device.get("id") is not None or device.get("advertisingId") is not None
    )
