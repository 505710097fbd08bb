"""Errors of the activation app; messages name rule parts and keys, never personal data."""

from __future__ import annotations

from cdp.core.exceptions import Conflict, InvalidInput, NotFound


class RuleError(InvalidInput):
    """Audience (or lifecycle-stage) rules that are not valid: `path` is the JSON pointer of the
    bad part (e.g. `/all/1/event/count`), `message` says what is wrong with it."""

    code = "invalid_rules"
    default_message = "The rules are not valid."

    def __init__(self, path: str, message: str) -> None:
        self.path = path or "/"
        super().__init__(f"{self.path}: {message}", extra={"path": self.path})
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class FieldInvalid(InvalidInput):
    """Input refused for one field: `field` names it (also in the API's answer)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message, extra={"field": field})


class AudienceInvalid(FieldInvalid):
    """An audience's key, name, description or status that is not valid (its rules answer
    RuleError)."""

    code = "invalid_audience"
    default_message = "The audience is not valid."


class LifecycleStageInvalid(FieldInvalid):
    """A lifecycle stage's key, name or description that is not valid."""

    code = "invalid_lifecycle_stage"
    default_message = "The lifecycle stage is not valid."


class AudienceKeyTaken(Conflict):
    code = "audience_key_taken"
    default_message = "An audience with this key exists in the workspace."


class AudienceNotFound(NotFound):
    code = "audience_not_found"
    default_message = "No such audience."


class ComputedTraitInvalid(FieldInvalid):
    """A computed trait that cannot be defined as asked (a personal-data property, a property
    missing for an aggregate, a bad event filter)."""

    code = "invalid_computed_trait"
    default_message = "The computed trait is not valid."


class ComputedTraitKeyTaken(Conflict):
    code = "computed_trait_key_taken"
    default_message = "A computed trait with this key exists in the workspace."


class LifecycleStageKeyTaken(Conflict):
    code = "lifecycle_stage_key_taken"
    default_message = "A lifecycle stage with this key exists in the workspace."


class DestinationInvalid(InvalidInput):
    """A destination its kind cannot have (an undeclared identifier, a bad URL, no purpose);
    `code` says which."""

    code = "invalid_destination"
    default_message = "The destination is not valid."


class SyncInvalid(InvalidInput):
    code = "invalid_sync"
    default_message = "The sync is not valid."


class SyncRunning(Conflict):
    code = "sync_running"
    default_message = "A run of this sync is queued or running already."


class SyncDisabled(Conflict):
    code = "sync_disabled"
    default_message = "This sync or its destination is disabled."


class PersonalizationInvalid(FieldInvalid):
    """A personalization setting that would expose what it may not (a trait not classified as
    a plain attribute, an unknown purpose); `field` names the offending setting."""

    code = "invalid_personalization"
    default_message = "The personalization settings are not valid."


class UserIdNotAccepted(InvalidInput):
    code = "user_id_not_accepted"
    default_message = (
        "This workspace does not look visitors up by userId here; send the anonymousId."
    )
