"""The audit trail: django-auditlog's entries, chained by hash and append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auditlog.models import AbstractLogEntry
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from cdp.core import bulk
from cdp.core.crypto import BlindIndexField, EncryptedJSONField, EncryptedTextField
from cdp.core.ids import uuid7
from governance import chain
from governance.enums import Regime, RequestState, RequestType, RetentionKind, RetentionUnit


class AuditLogEntry(AbstractLogEntry):
    """An auditlog entry that stores the hash of the previous entry and of its own canonical
    content. Entries are only ever inserted; `verify_audit_chain` recomputes the chain."""

    actor_ref = models.CharField(max_length=64, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    entry_hash = models.CharField(max_length=64, editable=False, unique=True)

    class Meta(AbstractLogEntry.Meta):
        swappable = "AUDITLOG_LOGENTRY_MODEL"
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"

    def __str__(self) -> str:
        return f"Audit entry {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise chain.AuditTrailAppendOnly()
        with transaction.atomic(using=kwargs.get("using")):
            super().save(*args, **kwargs)

    @classmethod
    def append_many(cls, entries: list[AuditLogEntry]) -> None:
        """Append new entries in this order, in one insert (cdp.core.audit.log_changes): the
        chain is the same as saving them one by one."""
        if not entries:
            return
        columns = [f.name for f in cls._meta.concrete_fields if not f.primary_key]
        with transaction.atomic():
            chain.seal_new_entries(entries)
            # COPY (PostgreSQL) keeps the rows' order, so ids follow the chain.
            bulk.insert(cls, columns, bulk.model_rows(entries, columns))

    def _save_table(self, *args: Any, **kwargs: Any) -> Any:
        # Sealed here, after pre_save: auditlog's set_actor() (the middleware, on every admin
        # request) fills actor, cid and remote address in a pre_save hook, and those are hashed.
        chain.seal_new_entry(self)
        return super()._save_table(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise chain.AuditTrailAppendOnly()


class DataSubjectRequest(models.Model):
    """A data-subject request: who asked (contact details sealed under the request's own data
    key), for what, under which regime, its state and deadlines, and the steward handling it."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    type = models.CharField(max_length=16, choices=RequestType.choices)
    regime = models.CharField(max_length=16, choices=Regime.choices)
    state = models.CharField(
        max_length=24, choices=RequestState.choices, default=RequestState.RECEIVED
    )
    # The subject's contact identifier (email or phone), sealed, and its blind index.
    contact_type = models.CharField(max_length=16)
    contact = EncryptedTextField(key_field="data_key")
    contact_index = BlindIndexField()
    data_key = models.ForeignKey("profiles.DataKey", on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey(
        "profiles.Profile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Rectification changes or other request details, sealed.
    details = EncryptedJSONField(key_field="data_key", null=True, blank=True)
    received_at = models.DateTimeField()
    acknowledge_by = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField()
    extended_due_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    verification_code_hash = models.CharField(max_length=64, blank=True)
    verification_expires_at = models.DateTimeField(null=True, blank=True)
    verification_attempts = models.PositiveSmallIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    status_token_hash = models.CharField(max_length=64, unique=True)
    legal_hold = models.BooleanField(default=False)
    paused = models.BooleanField(default=False)
    # The erasure cancellation window: set at verification; until it closes the subject may
    # cancel and nothing is erased.
    cancel_until = models.DateTimeField(null=True, blank=True)
    # A steward asked to fulfil: the request is carried out by a worker once this moment has
    # passed (at once when queued, when the window closes for an erasure asked for during it;
    # governance.tasks.dsr_fulfil, and dsr_fulfilments_due hourly for what is left).
    fulfil_after = models.DateTimeField(null=True, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    denial_reason = models.TextField(blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "state", "due_at"], name="dsr_queue"),
            models.Index(fields=["workspace", "contact_index"], name="dsr_contact"),
        ]
        permissions = [("handle_request", "Handle this data-subject request")]

    def __str__(self) -> str:
        return f"{self.get_type_display()} request {self.id}"

    @property
    def effective_due_at(self) -> datetime:
        return self.extended_due_at or self.due_at


class RequestUserObjectPermission(UserObjectPermissionBase):
    """The steward a request is assigned to (`governance.handle_request` on it; django-guardian,
    direct foreign key: deleted with the request instead of left in the generic table)."""

    content_object = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE)


class RequestGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE)


class RequestEvent(models.Model):
    """The request's own history: every action with who did it and the state it moved to.
    Notes are the steward's words and must not quote personal data."""

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=32)
    from_state = models.CharField(max_length=24, blank=True)
    to_state = models.CharField(max_length=24, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} on request {self.request_id}"


class ExportArchive(models.Model):
    """An access or portability export: a zip (JSON + its JSON Schema + an HTML rendering),
    sealed under a data key of its own (destroyed with the person's erasure); downloadable
    through an expiring token."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    request = models.ForeignKey(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="exports"
    )
    archive = EncryptedTextField(key_field="data_key", help_text="base64 of the zip")
    data_key = models.ForeignKey("profiles.DataKey", on_delete=models.PROTECT, related_name="+")
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    download_token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    downloads = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Export {self.id}"


class ErasureCertificate(models.Model):
    """What an erasure did, store by store and destination by destination, signed."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    request = models.OneToOneField(
        DataSubjectRequest, on_delete=models.PROTECT, related_name="certificate"
    )
    body = models.JSONField()
    signature = models.CharField(max_length=200)
    kid = models.CharField(max_length=64)
    issued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Erasure certificate {self.id}"


MAX_CANCELLATION_HOURS = 720  # 30 days: a window must leave time to answer within the deadline


class GovernanceSettings(models.Model):
    """A workspace's governance settings: its erasure cancellation window and the contacts the
    records of processing name. One row per workspace, created on first use."""

    workspace = models.OneToOneField(
        "profiles.Workspace", on_delete=models.CASCADE, related_name="+"
    )
    erasure_cancellation_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_CANCELLATION_HOURS)],
        help_text="Hours after verification during which the subject may cancel an erasure and "
        "nothing is erased. Empty: the CDP_ERASURE_CANCELLATION_HOURS setting.",
    )
    controller_contact = models.CharField(
        max_length=300,
        blank=True,
        help_text="The controller's name and contact, for the records of processing.",
    )
    dpo_contact = models.CharField(
        max_length=300, blank=True, help_text="The data protection officer's contact, if any."
    )
    # When the default retention policies were seeded: once, so a steward's deletion sticks.
    retention_defaults_seeded_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "governance settings"
        verbose_name_plural = "governance settings"

    def __str__(self) -> str:
        return f"Governance settings of workspace {self.workspace_id}"


class ComplianceReport(GovernanceSettings):
    """No data of its own: the admin's entry for the compliance reports page (a proxy model,
    so the page sits in the governance section with a permission check of its own)."""

    class Meta:
        proxy = True
        verbose_name = "compliance report"
        verbose_name_plural = "compliance reports"


class RetentionPolicy(models.Model):
    """How long one kind of data is kept in a workspace (see governance.retention for what
    each kind removes). Edited by stewards in the admin; every change and every run is
    audited."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=24, choices=RetentionKind.choices)
    period = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    unit = models.CharField(max_length=8, choices=RetentionUnit.choices, default=RetentionUnit.DAYS)
    event_names = models.JSONField(
        default=list,
        blank=True,
        help_text="Events: the names it applies to (empty: every event). Purpose: the events "
        "collected only for the purpose.",
    )
    trait_keys = models.JSONField(
        default=list,
        blank=True,
        help_text="Traits: the keys it applies to. Purpose: the traits held only for it.",
    )
    purpose_key = models.CharField(
        max_length=64, blank=True, help_text="Purpose: the consent purpose's key."
    )
    description = models.TextField(
        blank=True, help_text="Why this period: shown in the records of processing."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_counts = models.JSONField(default=dict, blank=True, editable=False)
    # Full IP addresses: events received before this were cleared already, so each run opens
    # only the events received since the previous one.
    ip_cleared_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["workspace", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="retention_ws_name_unique"),
            models.CheckConstraint(condition=models.Q(period__gte=1), name="retention_period_min"),
        ]

    def __str__(self) -> str:
        return f"Retention policy {self.name}"
