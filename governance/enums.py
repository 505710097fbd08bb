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
