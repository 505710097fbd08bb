from django.db import models


class CandidateStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed (awaiting review)"
    ACCEPTED = "accepted", "Accepted by a steward (merged)"
    REJECTED = "rejected", "Rejected by a steward (never proposed again)"
    MERGED = "merged", "Merged automatically (above the auto-merge threshold)"


class RunKind(models.TextChoices):
    FULL = "full", "Full (every profile, parameters re-estimated)"
    INCREMENTAL = "incremental", "Incremental (new or changed profiles against the rest)"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


class ParametersMode(models.TextChoices):
    ESTIMATED = "estimated", "Estimated from the workspace's data by each full run (EM)"
    MANUAL = "manual", "Set by hand (runs use them as they are)"
