from django.db import models


class ImportKind(models.TextChoices):
    PROFILES = "profiles", "Profiles (identify, one row a person)"
    EVENTS = "events", "Events (track, one row an event)"


class ImportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
