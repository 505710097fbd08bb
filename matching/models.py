"""Probabilistic matching: a workspace's match settings, its runs, and the candidate pairs
stewards review. Nothing here holds a personal value: a candidate names two profiles and the
levels at which their fields agreed (the comparison vector), never the values compared."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from matching import defaults
from matching.enums import CandidateStatus, ParametersMode, RunKind, RunStatus


def _default_fields() -> list[dict[str, object]]:
    return [dict(f) for f in defaults.DEFAULT_FIELDS]


def _default_blocking() -> list[dict[str, object]]:
    return [dict(r) for r in defaults.DEFAULT_BLOCKING]


def _default_name_swap() -> list[str]:
    return list(defaults.DEFAULT_NAME_SWAP)


class MatchSettings(models.Model):
    """How a workspace's profiles are compared: fields and their comparators, blocking rules,
    the Fellegi-Sunter parameters (estimated or set by hand) and the two thresholds."""

    workspace = models.OneToOneField(
        "profiles.Workspace", on_delete=models.CASCADE, related_name="match_settings"
    )
    fields = models.JSONField(
        default=_default_fields,
        help_text='Comparison fields: [{"name", "source": "trait"|"identifier", "key", '
        '"comparator", "thresholds"?, "tf"?, "group"?}, ...].',
    )
    blocking = models.JSONField(
        default=_default_blocking,
        help_text='Blocking rules: [{"keys": ["postcode"]}, {"keys": ["last_name:metaphone", '
        '"birthday:year"]}, ...]; a pair is compared when it shares every key of a rule.',
    )
    name_swap = models.JSONField(
        default=_default_name_swap,
        blank=True,
        help_text="[first-name field, last-name field] to detect swapped names; [] for none.",
    )
    parameters_mode = models.CharField(
        max_length=16, choices=ParametersMode.choices, default=ParametersMode.ESTIMATED
    )
    parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"prior": λ, "fields": {column: {"m": [...], "u": [...]}}}, one value per '
        "comparison level; written by full runs when estimated.",
    )
    parameters_estimated_at = models.DateTimeField(null=True, blank=True)
    review_threshold = models.FloatField(
        default=0.5, help_text="Pairs at least this probable are proposed to stewards."
    )
    auto_merge_threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Pairs at least this probable are merged without review; empty: never (the "
        "default).",
    )
    max_block_size = models.PositiveIntegerField(
        default=1000, help_text="Blocking keys shared by more profiles than this are skipped."
    )
    u_sample_pairs = models.PositiveIntegerField(
        default=300_000, help_text="Random pairs sampled to estimate u."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "match settings"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(review_threshold__gt=0, review_threshold__lte=1),
                name="matchsettings_review_threshold_range",
            ),
            models.CheckConstraint(
                condition=models.Q(auto_merge_threshold__isnull=True)
                | models.Q(
                    auto_merge_threshold__gte=models.F("review_threshold"),
                    auto_merge_threshold__lte=1,
                ),
                name="matchsettings_auto_merge_threshold_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Match settings of workspace {self.workspace_id}"


class MatchRun(models.Model):
    """One matching run: what it considered, found and did, and the watermark the next
    incremental run starts from."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Profiles updated after `since` were the changed ones (incremental runs); `watermark` is
    # when this run read the profiles, the next incremental run's `since`.
    since = models.DateTimeField(null=True, blank=True)
    watermark = models.DateTimeField()
    threshold = models.FloatField()
    profiles_considered = models.PositiveIntegerField(default=0)
    profiles_changed = models.PositiveIntegerField(default=0)
    profiles_decrypted = models.PositiveIntegerField(default=0)
    candidate_pairs = models.PositiveBigIntegerField(default=0)
    proposed = models.PositiveIntegerField(default=0)
    auto_merged = models.PositiveIntegerField(default=0)
    parameters = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=200, blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "status", "-started_at"], name="matchrun_ws_status")
        ]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Match run {self.pk}"


class MatchCandidate(models.Model):
    """Two profiles that may be the same person, with the evidence: the probability, the match
    weight and the comparison vector. The pair is ordered (profile_a < profile_b) and unique
    per workspace, so a rejected pair is never proposed again."""

    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.PROTECT, related_name="+")
    profile_a = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+")
    profile_b = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(
        MatchRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="candidates"
    )
    probability = models.FloatField()
    match_weight = models.FloatField()
    # {field: {"level": n, "label": "jaro-winkler >= 0.92", "weight": bits, "group"?}}
    comparison = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=CandidateStatus.choices, default=CandidateStatus.PROPOSED
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    merge_id = models.BigIntegerField(
        null=True, blank=True, help_text="The profiles.Merge ledger row the merge wrote."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "profile_a", "profile_b"], name="matchcandidate_pair_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(profile_a__lt=models.F("profile_b")),
                name="matchcandidate_pair_ordered",
            ),
        ]
        indexes = [
            models.Index(
                fields=["workspace", "status", "-probability"], name="matchcandidate_queue"
            ),
            models.Index(fields=["profile_b"], name="matchcandidate_profile_b"),
        ]

    def __str__(self) -> str:
        return f"Match candidate {self.pk}"


class MatchKeys(models.Model):
    """What an incremental run needs of a profile without decrypting it: keyed hashes (under a
    key derived from CDP_INDEX_KEY, as blind indexes are) of its blocking keys and of the first
    value of each field with term frequencies, as of the last run that decrypted it. A run
    then decrypts only the changed profiles and those sharing a block with them. `fingerprint`
    names the settings and key the hashes were made under (fields, rules, survivorship,
    source priorities): hashes of other settings are not used. Deleted with the profile and
    by the erasure handler; see docs/decisions/0008-match-keys.md."""

    profile = models.OneToOneField(
        "profiles.Profile", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.CASCADE, related_name="+")
    fingerprint = models.CharField(max_length=64)
    # big-endian int64s: a tag (engine.record_keys) in the top byte, 56 bits of keyed hash
    keys = models.BinaryField()
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["workspace", "fingerprint"], name="matchkeys_ws_fp")]
        verbose_name_plural = "match keys"

    def __str__(self) -> str:
        return f"Match keys of profile {self.profile_id}"
