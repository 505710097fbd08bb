"""Audiences, computed traits, destinations, syncs and the delivery ledger.

Profiles and events belong to `profiles`; this app only derives from them (computed traits,
memberships) and records what left the platform (deliveries), what must be taken back
(removals) and whom a sync must look at again (rechecks). Every row naming a profile is covered
by the activation personal-data handler.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from cdp.core.crypto.fields import EncryptedJSONField, EncryptedTextField
from cdp.core.ids import uuid7

from .enums import (
    AudienceStatus,
    ComputedTraitKind,
    DeliveryAction,
    DeliveryStatus,
    DestinationKind,
    MembershipChangeKind,
    RemovalReason,
    RemovalStatus,
    SyncMode,
    SyncRunStatus,
)

# What a steward writes to explain an audience or a stage: room for a paragraph, not a dump.
DESCRIPTION_MAX_LENGTH = 2000


class ComputedTrait(models.Model):
    """A per-profile value computed from events (count, sum, last value, ...), over an optional
    window and event filter, kept current as events arrive and recomputed on a schedule. Only
    plain (non-PII) event properties can be aggregated: sealed properties are never read here."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    key = models.SlugField(max_length=64, help_text="Name used in audience rules.")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=24, choices=ComputedTraitKind.choices)
    event_name = models.CharField(
        max_length=200, blank=True, help_text="Only events of this name; blank for every event."
    )
    # Property filters in the audience rule language (see activation/rules/schema.json).
    event_filter = models.JSONField(default=list, blank=True)
    property = models.CharField(
        max_length=200, blank=True, help_text="The event property aggregated (not for count)."
    )
    window_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Only events of the last N days; blank for all time."
    )
    enabled = models.BooleanField(default=True)
    last_computed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="computed_trait_ws_key")
        ]

    def __str__(self) -> str:
        return self.name


class ComputedTraitValue(models.Model):
    """A computed trait's current value for one profile. `number` holds numeric results (for
    comparisons in SQL), `text` the others; `value` keeps the exact JSON value."""

    # Neither has an index of its own: computed_value_unique and computed_value_profile.
    trait = models.ForeignKey(
        ComputedTrait, on_delete=models.CASCADE, related_name="values", db_index=False
    )
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    value = models.JSONField(null=True)
    number = models.FloatField(null=True)
    # NULL means "not a text result" (numbers and booleans), distinct from an empty string.
    text = models.TextField(null=True)  # noqa: DJ001
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trait", "profile"], name="computed_value_unique")
        ]
        indexes = [
            models.Index(fields=["profile"], name="computed_value_profile"),
            # Audience conditions on a computed trait ("lifetime value > 500") range-scan this.
            models.Index(fields=["trait", "number"], name="computed_value_trait_number"),
        ]

    def __str__(self) -> str:
        return f"{self.trait_id}={self.value!r}"


class LifecycleStage(models.Model):
    """A workspace's definition of a lifecycle stage (new visitor, first-time buyer, repeat
    customer, high-value, churn-risk, inactive, ...) as a rule in the audience language."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    rules = models.JSONField()
    position = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "key"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="lifecycle_ws_key")
        ]

    def __str__(self) -> str:
        return self.name


class Audience(models.Model):
    """A segment of profiles defined by rules in the audience language; its membership is
    materialized in AudienceMembership with entered/exited history."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    rules = models.JSONField()
    realtime = models.BooleanField(
        default=False,
        help_text="Re-evaluate the profiles touched by new events within seconds of arrival.",
    )
    status = models.CharField(
        max_length=16, choices=AudienceStatus.choices, default=AudienceStatus.ACTIVE
    )
    size = models.PositiveIntegerField(default=0)
    last_computed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="audience_ws_key")]

    def __str__(self) -> str:
        return self.name


class AudienceMembership(models.Model):
    """A profile currently in an audience."""

    # Neither has an index of its own: membership_unique and membership_profile.
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "profile"], name="membership_unique")
        ]
        indexes = [models.Index(fields=["profile"], name="membership_profile")]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.audience_id}"


class MembershipChange(models.Model):
    """Entered/exited history of audience membership; incremental syncs read it."""

    id = models.BigAutoField(primary_key=True)
    # Neither has an index of its own: membership_change_cursor and _profile.
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="changes", db_index=False
    )
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    change = models.CharField(max_length=8, choices=MembershipChangeKind.choices)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["audience", "id"], name="membership_change_cursor"),
            models.Index(fields=["profile"], name="membership_change_profile"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.change} {self.audience_id}"


class Destination(models.Model):
    """Where audiences are sent. It declares the consent purposes it serves (a profile is sent
    only when the gate allows every one of them at send time) and the data it receives."""

    # Credentials are sealed, but they are the workspace's secret, not anyone's personal data.
    holds_personal_data = False

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=DestinationKind.choices)
    purposes = models.ManyToManyField("consent.Purpose", related_name="+")
    # What the destination receives: identifiers and attribute traits by name, e.g.
    # {"identifiers": ["email", "phone"], "traits": ["first_name", "country"]}.
    data = models.JSONField(default=dict, blank=True)
    # Non-secret settings: webhook URL, file directory, default phone region, ...
    config = models.JSONField(default=dict, blank=True)
    secret = EncryptedTextField(null=True, blank=True, key_field="data_key")
    data_key = models.ForeignKey(
        "profiles.DataKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    min_audience_size = models.PositiveIntegerField(
        default=100, help_text="Ad-platform exports of smaller audiences are refused."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="destination_ws_name")
        ]

    def __str__(self) -> str:
        return self.name


class Sync(models.Model):
    """An audience connected to a destination."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="syncs")
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="syncs")
    mode = models.CharField(max_length=16, choices=SyncMode.choices, default=SyncMode.INCREMENTAL)
    interval_minutes = models.PositiveIntegerField(
        default=60, help_text="How often the scheduler runs it; 0 for manual runs only."
    )
    enabled = models.BooleanField(default=True)
    # Incremental syncs send the membership changes after this one.
    cursor = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    # A webhook receiver that answers a run's additions with a Retry-After longer than a
    # worker may wait defers them: kept here, beside the cursor the next run resumes from, so
    # that the scheduler waits as asked and the deferrals in a row are capped.
    deferred_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The destination asked not to be sent to before this time: scheduled runs "
        "wait until then.",
    )
    deferrals = models.PositiveSmallIntegerField(
        default=0,
        help_text="Runs in a row whose additions the destination asked to wait for; at "
        "CDP_SYNC_MAX_DEFERRALS the run fails and its batch is dead-lettered.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "destination"], name="sync_unique")
        ]

    def __str__(self) -> str:
        return f"{self.audience} → {self.destination}"


class SyncRun(models.Model):
    """One execution of a sync, with sent / removed / excluded-by-reason counts and progress."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    sync = models.ForeignKey(Sync, on_delete=models.CASCADE, related_name="runs")
    mode = models.CharField(max_length=16, choices=SyncMode.choices)
    status = models.CharField(
        max_length=16, choices=SyncRunStatus.choices, default=SyncRunStatus.QUEUED
    )
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    # Reason -> count: no_consent:<purpose>, restricted, suppressed, below_min_size, ...
    excluded = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    artifact = models.CharField(
        max_length=500, blank=True, help_text="The file written, for file destinations."
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["sync", "-created_at"], name="sync_run_recent")]

    def __str__(self) -> str:
        return f"Sync run {self.id}"


class Delivery(models.Model):
    """The delivery ledger: one row per record sent to (or removed from) a destination, with
    the consent records that allowed it at that moment and a hash of the exact payload."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Neither has an index of its own: delivery_lookup and delivery_recent lead with them.
    workspace = models.ForeignKey(
        "profiles.Workspace", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    destination = models.ForeignKey(
        Destination, on_delete=models.PROTECT, related_name="deliveries", db_index=False
    )
    audience = models.ForeignKey(
        Audience, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sync_run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    profile = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=8, choices=DeliveryAction.choices)
    # Purpose key -> the ConsentRecord id that allowed it, or the legal basis when the purpose
    # does not rest on consent (e.g. {"ads": "0190...", "service": "contract"}).
    basis = models.JSONField(default=dict)
    payload_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices)
    delivered_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "profile", "destination"], name="delivery_lookup"),
            models.Index(fields=["destination", "-delivered_at"], name="delivery_recent"),
            # Every incremental run looks up the adds of its destination and audience that
            # did not arrive (ledger.adds_undelivered): a few rows among the millions the
            # destination received. Built concurrently on PostgreSQL (migration 0008).
            models.Index(
                fields=["workspace", "destination", "audience", "profile"],
                condition=models.Q(action=DeliveryAction.ADD)
                & ~models.Q(status=DeliveryStatus.DELIVERED),
                name="delivery_add_undelivered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.profile_id} → {self.destination_id}"


class Removal(models.Model):
    """A removal owed to a destination that received a person: after consent withdrawal, an
    exit from the audience, or erasure. What the destination needs to find the person (hashed
    identifiers, user id) is sealed under a key of its own, because after an erasure the
    profile and its keys are gone; the key is destroyed once the removal is sent."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    destination = models.ForeignKey(Destination, on_delete=models.PROTECT, related_name="removals")
    audience = models.ForeignKey(
        Audience, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    profile = models.ForeignKey(
        "profiles.Profile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=24, choices=RemovalReason.choices)
    payload = EncryptedJSONField(null=True, key_field="data_key")
    data_key = models.ForeignKey(
        "profiles.DataKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=12, choices=RemovalStatus.choices, default=RemovalStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="removal_due")]

    def __str__(self) -> str:
        return f"Removal {self.id}"


class SyncRecheck(models.Model):
    """A member of a sync's audience its next run must look at although their membership did
    not change: they granted consent for a purpose the destination serves, so a destination
    that took them back when they refused may receive them again. Written set-wise by the
    consent-grant hook (activation.regrants); a run that completes deletes the ones it read."""

    id = models.BigAutoField(primary_key=True)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    sync = models.ForeignKey(Sync, on_delete=models.CASCADE, related_name="rechecks")
    profile = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["sync", "id"], name="sync_recheck_sync"),
            models.Index(fields=["profile"], name="sync_recheck_profile"),
        ]

    def __str__(self) -> str:
        return f"Recheck {self.profile_id} for sync {self.sync_id}"


class PersonalizationConfig(models.Model):
    """What a workspace's websites may read about a visitor through `GET /v1/personalize`: the
    visitor's audiences and the traits chosen here, and only when the purpose named here allows
    it. Trait keys must be classified as plain attributes (checked when saved and again at
    every answer), so personal data can never be exposed to a browser."""

    workspace = models.OneToOneField(
        "profiles.Workspace", on_delete=models.CASCADE, related_name="+"
    )
    enabled = models.BooleanField(
        default=True, help_text="Off: /v1/personalize answers nothing for this workspace."
    )
    purpose = models.SlugField(
        max_length=64,
        default="personalization",
        help_text="The consent purpose that must allow processing before anything is answered.",
    )
    expose_audiences = models.BooleanField(
        default=True, help_text="Answer the keys of the active audiences the visitor is in."
    )
    accept_user_id = models.BooleanField(
        default=False,
        help_text="Also look visitors up by userId. The write key is public, so anyone could "
        "then ask about any userId: turn on only when userIds cannot be guessed.",
    )
    traits = models.JSONField(
        default=list, blank=True, help_text="Attribute trait keys exposed (never personal data)."
    )
    computed_traits = models.JSONField(
        default=list, blank=True, help_text="Computed trait keys exposed."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Personalization of workspace {self.workspace_id}"
