import re

from django.db import models

# A jurisdiction hint: ISO 3166-1 alpha-2, optionally with a subdivision (DE, US-CA, GB-SCT),
# or a region a workspace keys its purpose defaults by (EU). The consent API and
# /v1/personalize read it the same way.
JURISDICTION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


class LegalBasis(models.TextChoices):
    CONSENT = "consent", "Consent"
    CONTRACT = "contract", "Contract"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation"
    VITAL_INTERESTS = "vital_interests", "Vital interests"
    PUBLIC_TASK = "public_task", "Public task"
    LEGITIMATE_INTERESTS = "legitimate_interests", "Legitimate interests"


class Decision(models.TextChoices):
    GRANTED = "granted", "Granted"
    DENIED = "denied", "Denied"
    WITHDRAWN = "withdrawn", "Withdrawn"
    EXPIRED = "expired", "Expired"


class Method(models.TextChoices):
    BANNER = "banner", "Banner"
    PREFERENCE_CENTRE = "preference_centre", "Preference centre"
    API = "api", "API"
    IMPORT = "import", "Import"
    GPC = "gpc", "Global Privacy Control"
    TCF = "tcf", "IAB TCF string"
    STEWARD = "steward", "Steward"
    REQUEST = "request", "Data-subject request"
    # Recorded by the system, not by anyone: a grant older than its purpose's validity.
    EXPIRY = "expiry", "Expiry (validity elapsed)"


# What a caller of the consent API with a (public) write key may say it collected a choice by:
# a banner or consent manager on the site or app, or `api` for any other report of the
# person's own choice. The others are the server's to record: the hosted preference centre
# (reached by a signed link), TC strings and GPC signals (decoded from what was sent), imports,
# stewards, data-subject requests and expiry. A write key is public, so a claim to one of them
# would put evidence in the ledger that nobody can stand behind.
CLIENT_METHODS = (Method.BANNER, Method.API)


class DefaultMode(models.TextChoices):
    OPT_IN = "opt_in", "Opt-in (nothing until granted)"
    OPT_OUT = "opt_out", "Opt-out (allowed until denied)"
