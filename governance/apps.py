from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance and audit"

    def ready(self) -> None:
        from cdp.core import audit, registry
        from governance import handlers, models

        # Hashes of the code and status token are secrets' digests, not history worth keeping.
        audit.register(
            models.DataSubjectRequest,
            exclude_fields=("verification_code_hash", "status_token_hash"),
        )
        audit.register(models.RequestEvent)
        audit.register(models.ExportArchive, exclude_fields=("download_token_hash",))
        audit.register(models.ErasureCertificate)
        audit.register(models.GovernanceSettings)
        # Run bookkeeping is recorded by each run's own audit entry (governance.retention).
        audit.register(
            models.RetentionPolicy,
            exclude_fields=("last_run_at", "last_run_counts", "ip_cleared_until", "updated_at"),
        )
        audit.register(models.RequestUserObjectPermission)
        audit.register(models.RequestGroupObjectPermission)
        registry.register(handlers.REQUESTS_HANDLER)
