from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent"

    def ready(self) -> None:
        from cdp.core import audit, hooks, registry
        from consent import handlers, models, services

        for model in (models.Purpose, models.Notice, models.NoticeVersion, models.SigningKey):
            audit.register(model)
        audit.register(models.ConsentState)
        # ConsentRecord and Receipt are their own evidence: an append-only ledger chained by
        # hash per subject, and receipts signed with the workspace's key.
        registry.register(handlers.CONSENT_HANDLER)
        hooks.register_merge_hook("consent", services.consent_states_merge)
        hooks.register_unmerge_hook("consent", services.consent_states_unmerge)
