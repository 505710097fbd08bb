from django.db import models


class WorkspaceRole(models.TextChoices):
    """Steward roles: object permissions on a workspace (django-guardian)."""

    VIEW_PROFILES = "view_profiles", "View profiles"
    REVEAL_PII = "reveal_pii", "Reveal personal data"
    MANAGE_CONSENT = "manage_consent", "Manage consent"
    HANDLE_REQUESTS = "handle_requests", "Handle data-subject requests"
    MANAGE_AUDIENCES = "manage_audiences", "Manage audiences"
    VIEW_AUDIT = "view_audit", "View audit trail"
    MERGE_PROFILES = "merge_profiles", "Merge and unmerge profiles"
    # Changes what ingestion does with everyone's data: identity rules, trait classes (which
    # decide what is sealed), matching settings, bulk imports. Viewing profiles is not enough.
    MANAGE_DATA = "manage_data", "Manage identity rules, trait classes, matching and imports"


class SourceKind(models.TextChoices):
    WEBSITE = "website", "Website"
    APP = "app", "Mobile app"
    SERVER = "server", "Server"
    IMPORT = "import", "Bulk import"


class IdentifierType(models.TextChoices):
    """Built-in identifier types; workspaces may add their own (e.g. loyalty_id) by mapping."""

    USER_ID = "user_id", "User id"
    ANONYMOUS_ID = "anonymous_id", "Anonymous id"
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"
    DEVICE_ID = "device_id", "Device id"
    ADVERTISING_ID = "advertising_id", "Advertising id"


class TraitClass(models.TextChoices):
    PII = "pii", "Personal data (encrypted)"
    ATTRIBUTE = "attribute", "Attribute (plain, usable in audiences)"
    UNCLASSIFIED = "unclassified", "Not yet classified (treated as personal data)"


# A source's priority unless a steward sets one (lower wins under SOURCE_PRIORITY).
DEFAULT_SOURCE_PRIORITY = 100


class Survivorship(models.TextChoices):
    LATEST = "latest", "Latest value wins"
    EARLIEST = "earliest", "Earliest value wins"
    SOURCE_PRIORITY = "source_priority", "Highest-priority source wins"


class EventType(models.TextChoices):
    TRACK = "track", "Track"
    PAGE = "page", "Page"
    SCREEN = "screen", "Screen"
    IDENTIFY = "identify", "Identify"
    GROUP = "group", "Group"
    ALIAS = "alias", "Alias"


class ProfileStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    MERGED = "merged", "Merged into another profile"


class DataKeyPurpose(models.TextChoices):
    PROFILE = "profile", "A profile's data"
    INTAKE = "intake", "The collection intake buffer (short-lived, shredded once drained)"
    SIGNING = "signing", "A workspace's receipt-signing key"
    REQUEST = "request", "A data-subject request's contact details and export"
    DESTINATION = "destination", "A destination's credentials (webhook secret, API token)"
    REMOVAL = "removal", "What a destination needs to remove a person, kept until it is sent"
    SOURCE = "source", "A source's identity-verification secret"
