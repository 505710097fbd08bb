from django.db import models


class RequestType(models.TextChoices):
    ACCESS = "access", "Access"
    PORTABILITY = "portability", "Portability"
    ERASURE = "erasure", "Erasure"
    RECTIFICATION = "rectification", "Rectification"
    OPT_OUT = "opt_out", "Opt-out of sale/share"
    RESTRICTION = "restriction", "Restriction of processing"
    OBJECTION = "objection", "Objection"


class Regime(models.TextChoices):
    GDPR = "gdpr", "GDPR"
    UK_GDPR = "uk_gdpr", "UK GDPR"
    CCPA = "ccpa", "CCPA/CPRA"
    LGPD = "lgpd", "LGPD"
    VOLUNTARY = "voluntary", "Voluntary"


class RequestState(models.TextChoices):
    RECEIVED = "received", "Received"
    AWAITING_VERIFICATION = "awaiting_verification", "Awaiting verification"
    VERIFIED = "verified", "Verified"
    IN_PROGRESS = "in_progress", "In progress"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    FULFILLED = "fulfilled", "Fulfilled"
    PARTIALLY_FULFILLED = "partially_fulfilled", "Partially fulfilled"
    DENIED = "denied", "Denied"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
    ERROR = "error", "Error"


FINAL_STATES = frozenset(
    {
        RequestState.FULFILLED,
        RequestState.PARTIALLY_FULFILLED,
        RequestState.DENIED,
        RequestState.REVOKED,
        RequestState.EXPIRED,
    }
)


class RetentionKind(models.TextChoices):
    """What a retention policy removes once its period is over (see governance.retention)."""

    EVENTS = "events", "Events (by name, or all events)"
    EVENT_IP = "event_ip", "Full IP address of events (the truncated one stays)"
    TRAITS = "traits", "Traits (by key), counted from when they were last set"
    INACTIVE_PROFILES = "inactive_profiles", "Profiles inactive for the period (erased)"
    PURPOSE = "purpose", "Data held only for a purpose, once it is no longer allowed"


class RetentionUnit(models.TextChoices):
    DAYS = "days", "days"
    MONTHS = "months", "months"
    YEARS = "years", "years"


class ReportKind(models.TextChoices):
    DSR = "dsr", "Data-subject requests (SLA)"
    CONSENT = "consent", "Consent"
    ROPA = "ropa", "Records of processing (GDPR Art. 30)"
    PII_ACCESS = "pii-access", "Personal-data access (reveals)"
    AUDIT = "audit", "Audit trail"


class ReportFormat(models.TextChoices):
    HTML = "html", "HTML (printable)"
    CSV = "csv", "CSV"
