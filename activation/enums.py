"""Choices of the activation app."""

from __future__ import annotations

from django.db import models


class ComputedTraitKind(models.TextChoices):
    COUNT = "count", "Event count"
    SUM = "sum", "Sum of a property"
    AVG = "avg", "Average of a property"
    MIN = "min", "Minimum of a property"
    MAX = "max", "Maximum of a property"
    FIRST = "first", "First value of a property"
    LAST = "last", "Last value of a property"
    MOST_FREQUENT = "most_frequent", "Most frequent value of a property"
    UNIQUE_COUNT = "unique_count", "Number of distinct values of a property"


class AudienceStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused (membership not updated)"
    ARCHIVED = "archived", "Archived"


class MembershipChangeKind(models.TextChoices):
    ENTERED = "entered", "Entered"
    EXITED = "exited", "Exited"


class DestinationKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON, HMAC-signed)"
    GOOGLE_CUSTOMER_MATCH = "google_customer_match", "Google Customer Match upload file"
    META_CUSTOM_AUDIENCES = "meta_custom_audiences", "Meta Custom Audiences upload file"
    CSV = "csv", "CSV file"
    JSONL = "jsonl", "JSON Lines file"


AD_PLATFORMS = frozenset(
    {DestinationKind.GOOGLE_CUSTOMER_MATCH, DestinationKind.META_CUSTOM_AUDIENCES}
)


class SyncMode(models.TextChoices):
    FULL = "full", "Full (send every member, remove those gone)"
    INCREMENTAL = "incremental", "Incremental (adds and removes since the last run)"


class SyncRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partially succeeded"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused (e.g. below the minimum audience size)"


class DeliveryAction(models.TextChoices):
    ADD = "add", "Added"
    REMOVE = "remove", "Removed"


class DeliveryStatus(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (will retry)"
    DEAD = "dead", "Dead letter (gave up)"


class RemovalReason(models.TextChoices):
    EXITED = "exited", "Left the audience"
    CONSENT_WITHDRAWN = "consent_withdrawn", "Consent withdrawn"
    # The grant outlived its purpose's validity (the consent ledger recorded `expired`): the
    # person withdrew nothing, and a steward or a destination reading the reason must see so.
    CONSENT_EXPIRED = "consent_expired", "Consent expired"
    RESTRICTED = "restricted", "Processing restricted"
    ERASURE = "erasure", "Erasure request"


class RemovalStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (will retry)"
    DEAD = "dead", "Dead letter (gave up)"
