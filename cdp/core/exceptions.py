"""Application errors: every expected failure is one of these, mapped to `{"code", "message"}`
with its HTTP status by the API's exception handler. Messages never carry personal data."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    code = "error"
    status = 400
    default_message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        if code:
            self.code = code
        self.extra = extra or {}
        super().__init__(self.message)


class InvalidInput(ApplicationError):
    code = "invalid"
    status = 400
    default_message = "The input is not valid."


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class PermissionDenied(ApplicationError):
    code = "forbidden"
    status = 403
    default_message = "You do not have permission to do this."


class Conflict(ApplicationError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class RateLimited(ApplicationError):
    code = "rate_limited"
    status = 429
    default_message = "Too many messages for this source; retry later."

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(f"Too many messages for this source; retry in {retry_after} s.")
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after), "X-RateLimit-Reset": str(retry_after)}
