"""Errors of the destination layer. Messages carry counts and field names, never values."""

from __future__ import annotations

from cdp.core.exceptions import ApplicationError, InvalidInput

__all__ = ["AudienceTooSmall", "ExportFieldsInvalid"]


class AudienceTooSmall(ApplicationError):
    """An ad-platform export would hold fewer people than the configured minimum.

    Small uploads let a platform single people out (and the platforms discard lists under
    their own floor anyway: Meta advises against lists of fewer than 100 people)."""

    code = "audience_too_small"
    status = 409
    default_message = "The audience is too small to be exported to an ad platform."

    def __init__(self, *, count: int, minimum: int) -> None:
        super().__init__(
            f"The audience has {count} exportable member(s); ad-platform exports need at "
            f"least {minimum}.",
            extra={"count": count, "minimum": minimum},
        )
        self.count = count
        self.minimum = minimum


class ExportFieldsInvalid(InvalidInput):
    code = "invalid_export_fields"
    default_message = "The export fields are not valid."
