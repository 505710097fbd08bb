"""Purposes, notices, the append-only consent ledger, current state, receipts, signing keys."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from cdp.core.crypto import BlindIndexField, EncryptedTextField
from cdp.core.fields import unconstrained_fk
from cdp.core.ids import uuid7
from consent.enums import Decision, DefaultMode, LegalBasis, Method

# EEA member states answer to the "EU" defaults; GB (ISO) to the "UK" ones.
EEA = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
]  # fmt: skip
# Ten years: a longer validity means none, and days beyond the calendar break the sweep's date
# arithmetic.
MAX_CONSENT_VALIDITY_DAYS = 3650
JURISDICTION_GROUPS = {**dict.fromkeys(EEA, "EU"), "GB": "UK"}


class Purpose(models.Model):
    """Why data is processed. Activation asks the consent gate per purpose."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.CASCADE, related_name="+")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    legal_basis = models.CharField(
        max_length=24, choices=LegalBasis.choices, default=LegalBasis.CONSENT
    )
    # {"EU": "opt_in", "UK": "opt_in", "BR": "opt_in", "US-CA": "opt_out", "default": "opt_out"}
    defaults = models.JSONField(default=dict, blank=True)
    sale_or_share = models.BooleanField(
        default=False, help_text="A Global Privacy Control signal opts the person out."
    )
    tcf_purposes = models.JSONField(default=list, blank=True, help_text="IAB TCF purpose ids")
    # The ad platforms a sale/share purpose's data goes to, by GVL id (Google: 755): a TC string
    # grants the purpose only with each one's consent (consent.tcf.tcf_decisions).
    tcf_vendors = models.JSONField(
        default=list,
        blank=True,
        help_text="IAB TCF vendor ids (GVL) whose consent a TC string needs to grant a "
        "sale/share purpose; none, and TC strings never grant it",
    )
    dpv_purposes = models.JSONField(default=list, blank=True, help_text="W3C DPV purpose terms")
    data_categories = models.JSONField(default=list, blank=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    # How long a grant holds before it must be asked again; the daily sweep
    # (services.consent_grants_expire) records the older ones as expired.
    consent_validity_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONSENT_VALIDITY_DAYS)],
        help_text="Days a consent grant stays valid before it expires and is asked again "
        "(395: 13 months, as the banner asks again; at most 3650); empty: no expiry. Only "
        "purposes that rest on consent expire.",
    )
    position = models.PositiveSmallIntegerField(default=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "key"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="purpose_ws_key_unique"),
            models.CheckConstraint(
                condition=models.Q(consent_validity_days__isnull=True)
                | models.Q(
                    consent_validity_days__gte=1,
                    consent_validity_days__lte=MAX_CONSENT_VALIDITY_DAYS,
                ),
                name="purpose_consent_validity_bounded",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def default_mode(self, jurisdiction: str) -> str:
        """opt_in or opt_out for a jurisdiction: the exact code (US-CA), then its country (US),
        then its group (an EEA country -> EU, GB -> UK), then 'default'."""
        country = jurisdiction.split("-", maxsplit=1)[0]
        for candidate in (jurisdiction, country, JURISDICTION_GROUPS.get(country), "default"):
            if candidate and candidate in self.defaults:
                return str(self.defaults[candidate])
        return DefaultMode.OPT_IN


class Notice(models.Model):
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.CASCADE, related_name="+")
    key = models.SlugField(max_length=64)
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="notice_ws_key_unique")
        ]

    def __str__(self) -> str:
        return self.title


class NoticeVersion(models.Model):
    """The exact text a person saw: versions are never edited, a change is a new version."""

    notice = models.ForeignKey(Notice, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    language = models.CharField(max_length=16, default="en")
    text = models.TextField()
    text_hash = models.CharField(max_length=64, editable=False)
    purposes = models.JSONField(default=list, help_text="purpose keys this version covers")
    policy_url = models.URLField(blank=True)
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["notice", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["notice", "version"], name="noticeversion_unique")
        ]

    def __str__(self) -> str:
        return f"{self.notice} v{self.version}"


class ConsentRecord(models.Model):
    """One consent event, never changed or deleted by the services (erasure aside). Records of a
    subject (an identity) are chained by hash: each stores the previous record's hash."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Neither has an index of its own: consentrecord_purpose and consentrecord_profile lead
    # with them.
    workspace = unconstrained_fk(
        "profiles.Workspace", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    profile = models.ForeignKey(
        "profiles.Profile", null=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    subject_type = models.CharField(max_length=64)
    subject_index = BlindIndexField()
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="records")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    notice_version = models.ForeignKey(
        NoticeVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    method = models.CharField(max_length=24, choices=Method.choices)
    jurisdiction = models.CharField(max_length=16, blank=True)
    source = unconstrained_fk(
        "profiles.Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_time = models.DateTimeField(null=True, blank=True)
    server_time = models.DateTimeField()
    # Keyed hashes (HMAC) of the IP address, user agent and page URL: proof without the values.
    proof = models.JSONField(default=dict, blank=True)
    # Signals as received: {"gpc": true, "tc_string": "..."}; a TC string names no person.
    signals = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    record_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["workspace", "subject_index", "server_time"], name="consentrecord_subject"
            ),
            models.Index(
                fields=["profile", "purpose", "server_time"], name="consentrecord_profile"
            ),
            models.Index(
                fields=["workspace", "purpose", "server_time"], name="consentrecord_purpose"
            ),
        ]

    def __str__(self) -> str:
        return f"Consent record {self.id}"


class ConsentState(models.Model):
    """The current decision per profile and purpose, kept by the services from the ledger."""

    # Neither has an index of its own: consentstate_gate and consentstate_unique lead with them.
    workspace = unconstrained_fk(
        "profiles.Workspace", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="states")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    record = models.ForeignKey(ConsentRecord, on_delete=models.CASCADE, related_name="+")
    updated_at = models.DateTimeField()
    # Set when a merge met conflicting decisions, GPC overrode an opt-in, or a newer notice
    # version covers a grant given under an earlier one: ask again. The gate reads `decision`
    # alone; a flagged grant holds until the person answers, whose next decision clears it.
    needs_reconsent = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "purpose"], name="consentstate_unique")
        ]
        indexes = [
            models.Index(fields=["workspace", "purpose", "decision"], name="consentstate_gate"),
            # The gate probed per member of an audience: one index-only lookup on PostgreSQL
            # (the decision is in the index) instead of a heap visit per profile.
            models.Index(
                fields=["profile", "purpose"], include=["decision"], name="consentstate_probe"
            ),
        ]

    def __str__(self) -> str:
        return f"Consent state {self.pk}"


class SigningKey(models.Model):
    """A workspace's Ed25519 key for consent receipts; the private key is sealed under a data
    key of its own, the public key is published at
    /.well-known/cdp-receipt-keys.json?workspace=<slug>."""

    # Encrypted, but the workspace's secret, not anyone's personal data.
    holds_personal_data = False

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    kid = models.CharField(max_length=64, unique=True)
    public_key = models.BinaryField()
    private_key = EncryptedTextField(key_field="data_key")
    data_key = models.ForeignKey("profiles.DataKey", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Receipt key {self.kid}"


class Receipt(models.Model):
    """A signed consent receipt (ISO/IEC TS 27560 / Kantara fields) for one consent change."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = unconstrained_fk("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey(
        "profiles.Profile", null=True, on_delete=models.CASCADE, related_name="+"
    )
    subject_index = BlindIndexField()
    records = models.JSONField(default=list)
    body = models.JSONField()
    signature = models.CharField(max_length=200)
    kid = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Receipt {self.id}"
