"""Workspaces, API tokens, profiles and the data keys that protect each profile's data."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from cdp.core.crypto import BlindIndexField, EncryptedJSONField, EncryptedTextField
from cdp.core.fields import unconstrained_fk
from cdp.core.ids import uuid7
from profiles.enums import (
    DEFAULT_SOURCE_PRIORITY,
    DataKeyPurpose,
    EventType,
    IdentifierType,
    ProfileStatus,
    SourceKind,
    Survivorship,
    TraitClass,
    WorkspaceRole,
)


class Workspace(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [(role.value, role.label) for role in WorkspaceRole]

    def __str__(self) -> str:
        return self.name


class WorkspaceUserObjectPermission(UserObjectPermissionBase):
    """A steward's role on a workspace (django-guardian, direct foreign key: a real join and
    cascade instead of the generic content-type table)."""

    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class WorkspaceGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class ApiToken(models.Model):
    """A management-API token for one workspace. Only a SHA-256 of the secret is stored."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    permissions = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_permission(self, codename: str) -> bool:
        return codename in self.permissions


class Profile(models.Model):
    """One person in a workspace. Its personal data lives in related rows, sealed under the
    data keys it owns. A profile absorbed by a merge stays as a row (status merged, pointing at
    the survivor) so that the merge can be undone and late references still resolve."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No index of its own: profile_ws_created leads with it.
    workspace = unconstrained_fk(
        Workspace, on_delete=models.PROTECT, related_name="profiles", db_index=False
    )
    status = models.CharField(
        max_length=16, choices=ProfileStatus.choices, default=ProfileStatus.ACTIVE
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="absorbed"
    )
    # Attribute traits after survivorship (plain, for audiences); PII traits are in Trait rows.
    attributes = models.JSONField(default=dict, blank=True)
    merge_count = models.PositiveIntegerField(default=0)
    # Processing restricted (GDPR Art. 18): the consent gate, audiences and activation skip it.
    restricted = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "created_at"], name="profile_ws_created"),
            models.Index(fields=["workspace", "status"], name="profile_ws_status"),
        ]

    def __str__(self) -> str:
        return f"Profile {self.id}"


class DataKey(models.Model):
    """A profile's data key, wrapped by a master key (KEK). Destroying it (crypto-shredding)
    clears `wrapped` for good; the row stays as evidence of when that happened."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by datakey_purpose and datakey_profile, not each by an index of its own.
    workspace = unconstrained_fk(
        Workspace, on_delete=models.PROTECT, related_name="data_keys", db_index=False
    )
    profile = models.ForeignKey(
        Profile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="data_keys",
        db_index=False,
    )
    purpose = models.CharField(
        max_length=16, choices=DataKeyPurpose.choices, default=DataKeyPurpose.PROFILE
    )
    kek_id = models.CharField(max_length=64)
    wrapped = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    rewrapped_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["profile"], name="datakey_profile"),
            models.Index(fields=["kek_id"], name="datakey_kek"),
            models.Index(fields=["workspace", "purpose", "created_at"], name="datakey_purpose"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(destroyed_at__isnull=True, wrapped__isnull=False)
                    | models.Q(destroyed_at__isnull=False, wrapped__isnull=True)
                ),
                name="datakey_wrapped_xor_destroyed",
            )
        ]

    def __str__(self) -> str:
        return f"Data key {self.id}"


class Source(models.Model):
    """Where data comes from: a website, app, server or import, with its public write key."""

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="sources")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=SourceKind.choices, default=SourceKind.WEBSITE)
    # Write keys are public by design (they ship in browser JavaScript); they identify, they do
    # not protect. What a key may do is bounded by origins, rate limits and the enabled flag.
    write_key = models.CharField(max_length=64, unique=True, editable=False)
    allowed_origins = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=6000)
    priority = models.PositiveSmallIntegerField(
        default=DEFAULT_SOURCE_PRIORITY,
        help_text="Lower wins when a trait's survivorship is by source priority.",
    )
    # The write key being public, whoever knows a person's userId could read and record that
    # person's consent with it. With this on, a consent API request that names a userId must
    # carry the HMAC of it under the source's SourceSecret, which only the site's server holds.
    identity_verification = models.BooleanField(
        default=False,
        help_text="Consent API requests naming a userId must carry its userHash.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="source_ws_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class SourceSecret(models.Model):
    """A source's identity-verification secret: the HMAC key a site's server signs its userIds
    with. It must be read back to verify, so it is sealed (not hashed) under a data key of its
    own, destroyed when the secret is rotated or verification is turned off."""

    # Encrypted, but the workspace's secret, not anyone's personal data.
    holds_personal_data = False

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="+")
    source = models.OneToOneField(Source, on_delete=models.PROTECT, related_name="identity_secret")
    secret = EncryptedTextField(key_field="data_key")
    data_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Identity-verification secret of source {self.source_id}"


class IdentityRule(models.Model):
    """How one identifier type may join profiles in a workspace (merge protection)."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="identity_rules"
    )
    identifier_type = models.CharField(max_length=64)
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower is stronger; the weaker identifier yields in a conflict."
    )
    max_per_profile = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many values per profile; empty: no limit."
    )
    window_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Count values seen within this many days; empty: ever."
    )
    merge = models.BooleanField(default=True, help_text="Whether this type may merge profiles.")
    blocked_values = models.JSONField(default=list, blank=True)
    blocked_patterns = models.JSONField(default=list, blank=True)
    # Identities first seen after this were checked against these blocked values at ingest;
    # a rebuild re-checks (decrypts) only the older ones.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "identifier_type"], name="identityrule_ws_type_unique"
            )
        ]
        ordering = ["priority", "identifier_type"]

    def __str__(self) -> str:
        return self.identifier_type


class IdentityPolicy(models.Model):
    """Workspace-wide identity settings: hard caps and trait-to-identifier mappings."""

    workspace = models.OneToOneField(
        Workspace, on_delete=models.CASCADE, related_name="identity_policy"
    )
    max_merges_per_profile = models.PositiveIntegerField(default=100)
    max_identities_per_profile = models.PositiveIntegerField(default=500)
    # {"loyalty_id": "loyalty_id"}: a trait whose value is also an identifier of that type.
    trait_identifiers = models.JSONField(default=dict, blank=True)
    dedup_window_days = models.PositiveIntegerField(default=7)

    class Meta:
        verbose_name_plural = "identity policies"

    def __str__(self) -> str:
        return f"Identity policy of {self.workspace}"


class Identity(models.Model):
    """One identifier value of a profile: encrypted, found by its blind index."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Neither has an index of its own: the unique (workspace, blind_index, type) and
    # identity_profile lead with them (an index more is one more write per identity).
    workspace = unconstrained_fk(
        Workspace, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="identities", db_index=False
    )
    # The profile the identifier was first attached to: where an unmerge gives it back.
    origin_profile_id = models.UUIDField()
    identifier_type = models.CharField(max_length=64)
    blind_index = BlindIndexField()
    value = EncryptedTextField(key_field="data_key")
    data_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="+")
    source = unconstrained_fk(Source, null=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=128, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "blind_index", "identifier_type"],
                name="identity_ws_index_type_unique",
            )
        ]
        indexes = [
            models.Index(fields=["profile", "identifier_type"], name="identity_profile"),
            # A workspace's own types only (loyalty_id, context.externalIds' types): whether
            # it holds any of one is asked when a profile lookup by it finds nothing; the
            # built-in types, nearly every identity, cost this index no write.
            models.Index(
                fields=["workspace", "identifier_type"],
                name="identity_ws_custom_type",
                condition=~models.Q(identifier_type__in=IdentifierType.values),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identifier_type} identity {self.id}"


class IdentityLink(models.Model):
    """Two identifiers seen in one message: the evidence the identity graph is rebuilt from."""

    # Neither has an index of its own: identitylink_ws_seen and identitylink_pair_unique lead
    # with them.
    workspace = unconstrained_fk(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    left = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="+", db_index=False)
    right = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=128, blank=True)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["left", "right"], name="identitylink_pair_unique")
        ]
        indexes = [models.Index(fields=["workspace", "seen_at"], name="identitylink_ws_seen")]

    def __str__(self) -> str:
        return f"Link {self.left_id} - {self.right_id}"


class TraitSchema(models.Model):
    """A workspace's classification of one trait key, and how merged values survive."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="traits")
    key = models.CharField(max_length=128)
    classification = models.CharField(
        max_length=16, choices=TraitClass.choices, default=TraitClass.UNCLASSIFIED
    )
    survivorship = models.CharField(
        max_length=16, choices=Survivorship.choices, default=Survivorship.LATEST
    )
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="traitschema_ws_key_unique")
        ]
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    @property
    def is_pii(self) -> bool:
        return self.classification != TraitClass.ATTRIBUTE


class Trait(models.Model):
    """The latest value of one trait from one source on one origin profile, with provenance.
    A profile's trait is chosen among its rows by the key's survivorship policy."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = unconstrained_fk(Workspace, on_delete=models.PROTECT, related_name="+")
    # No index of its own: trait_profile_key leads with it.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="trait_values", db_index=False
    )
    origin_profile_id = models.UUIDField()
    key = models.CharField(max_length=128)
    source = unconstrained_fk(Source, on_delete=models.PROTECT, related_name="+")
    is_pii = models.BooleanField()
    value_attribute = models.JSONField(null=True, blank=True)
    value_pii = EncryptedJSONField(null=True, key_field="data_key")
    data_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="+")
    observed_at = models.DateTimeField()
    first_observed_at = models.DateTimeField()
    message_id = models.CharField(max_length=128, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["origin_profile_id", "key", "source"], name="trait_origin_key_source"
            )
        ]
        indexes = [models.Index(fields=["profile", "key"], name="trait_profile_key")]

    def __str__(self) -> str:
        return f"Trait {self.key} of {self.profile_id}"


class Event(models.Model):
    """One collected event. Properties classified as personal data, and the IP address, are
    sealed under the profile's data key; the rest is plain for timelines and audiences."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Neither has an index of its own: event_ws_* and event_profile_time lead with them
    # (the events table takes the most writes; each index is one more per event).
    workspace = unconstrained_fk(
        Workspace, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    origin_profile_id = models.UUIDField()
    source = unconstrained_fk(Source, on_delete=models.PROTECT, related_name="+")
    message_id = models.CharField(max_length=128)
    type = models.CharField(max_length=16, choices=EventType.choices)
    name = models.CharField(max_length=200, blank=True)
    timestamp = models.DateTimeField(help_text="When it happened, corrected for clock skew.")
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    sealed = EncryptedJSONField(
        null=True, key_field="data_key", help_text="PII properties and the full IP, sealed."
    )
    data_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="+")

    class Meta:
        indexes = [
            models.Index(fields=["profile", "-timestamp"], name="event_profile_time"),
            models.Index(fields=["workspace", "name", "timestamp"], name="event_ws_name_time"),
            models.Index(fields=["workspace", "message_id"], name="event_ws_message"),
        ]

    def __str__(self) -> str:
        return f"{self.type} event {self.id}"


class SeenMessage(models.Model):
    """messageIds seen within the dedup window: a retried batch is stored once."""

    # No index of its own: the unique (workspace, message_id) leads with it.
    workspace = unconstrained_fk(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    message_id = models.CharField(max_length=128)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "message_id"], name="seenmessage_ws_message_unique"
            )
        ]
        indexes = [models.Index(fields=["received_at"], name="seenmessage_received")]

    def __str__(self) -> str:
        return f"Seen message {self.pk}"


class Merge(models.Model):
    """The merge ledger: which profile absorbed which, on what evidence, and what moved."""

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="+")
    survivor = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges")
    absorbed = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merged_away")
    identifier_type = models.CharField(max_length=64)
    identity = models.ForeignKey(Identity, null=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=128, blank=True)
    rule = models.CharField(max_length=200)
    # What supported a merge made outside ingestion (a steward's accepted match: probability,
    # per-field agreement); never personal data.
    evidence = models.JSONField(default=dict, blank=True)
    data_key_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    unmerged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "created_at"], name="merge_ws_created"),
            models.Index(fields=["survivor", "unmerged_at"], name="merge_survivor_open"),
        ]

    def __str__(self) -> str:
        return f"Merge {self.pk}"


class MergeConflict(models.Model):
    """A merge the rules refused, for stewards to review."""

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="conflicts")
    other_profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    identifier_type = models.CharField(max_length=64)
    identity = models.ForeignKey(Identity, null=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=128, blank=True)
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["workspace", "resolved_at"], name="conflict_ws_open")]

    def __str__(self) -> str:
        return f"Merge conflict {self.pk}"


class Suppression(models.Model):
    """An identifier of an erased person, as a keyed hash under its own derived key (never the
    value, never the blind index): ingestion drops and counts messages that carry one, so
    re-collection cannot bring the person back."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    identifier_type = models.CharField(max_length=64)
    keyed_hash = models.BinaryField(max_length=32)
    reason = models.CharField(max_length=64, default="erasure")
    created_at = models.DateTimeField(auto_now_add=True)

    # No encrypted or blind-index field and no link to a profile: nothing here names anyone,
    # so no personal-data handler covers it (an erasure creates rows here, never deletes them).

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "identifier_type", "keyed_hash"],
                name="suppression_unique",
            )
        ]

    def __str__(self) -> str:
        return f"Suppressed {self.identifier_type} {self.pk}"


class SuppressionHit(models.Model):
    """How many inbound messages were dropped on one day because they carried a suppressed
    identifier: what stewards see as "N events dropped" (the messages themselves are not kept)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "day"], name="suppressionhit_ws_day")
        ]
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.count} messages dropped on {self.day}"
