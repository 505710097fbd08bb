from django.db import models


class WorkspaceRole(models.TextChoices):
    """Steward roles: object permissions on a workspace (django-guardian)."""

    VIEW_PROFILES = "view_profiles", "View profiles"
    REVEAL_PII = "reveal_pii", "Reveal personal data"
    MANAGE_CONSENT = "manage_consent", "Manage consent"
    HANDLE_REQUESTS = "handle_requests", "Handle data-subject requests"
    MANAGE_AUDIENCES = "manage_audiences", "Manage audiences"
    VIEW_AUDIT = "view_audit", "View audit trail"
