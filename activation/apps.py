from typing import Any

from django.apps import AppConfig


class ActivationConfig(AppConfig):
    name = "activation"
    verbose_name = "Audiences and activation"

    def ready(self) -> None:
        from activation import destinations, handlers, models, regrants, removals
        from cdp.core import audit, hooks, registry

        # Destinations and syncs are configuration stewards change: audited (the secret is
        # encrypted, so never in a diff). Sync runs, the delivery ledger and removals are
        # written by the sync engine as their own record, like the consent ledger.
        audit.register(models.Destination)
        audit.register(
            models.Sync, exclude_fields=("cursor", "last_run_at", "deferred_until", "deferrals")
        )
        registry.register(handlers.ACTIVATION_HANDLER)
        # What /v1/personalize may expose is configuration stewards change: audited.
        audit.register(models.PersonalizationConfig, exclude_fields=("updated_at",))
        hooks.register_consent_change_hook("activation.removals", removals.on_consent_refused)
        hooks.register_consent_grant_hook("activation.regrants", regrants.on_consent_granted)
        hooks.register_restriction_hook("activation.removals", removals.on_restricted)
        registry.register_recipients("activation.destinations", destinations.destination_recipients)
        self._register_audiences(audit, hooks)

    @staticmethod
    def _register_audiences(audit: Any, hooks: Any) -> None:
        """Audiences, computed traits and lifecycle stages (activation.realtime)."""
        from activation import computed, models, realtime

        # Definitions stewards change are audited; the bookkeeping of refreshes is not a
        # change by anyone. Values, memberships and membership changes are derived rows,
        # rewritten set-wise by refreshes; MembershipChange is itself their history.
        audit.register(models.Audience, exclude_fields=("size", "last_computed_at", "updated_at"))
        audit.register(models.ComputedTrait, exclude_fields=("last_computed_at", "updated_at"))
        audit.register(models.LifecycleStage, exclude_fields=("updated_at",))
        hooks.register_ingest_hook("activation", realtime.on_ingested)
        hooks.register_merge_hook("activation", realtime.on_merged)
        hooks.register_unmerge_hook("activation", realtime.on_unmerged)
        # After removals' "activation" hook (hooks run in name order): memberships end at once.
        hooks.register_restriction_hook("activation_membership", realtime.on_restricted)
        hooks.register_restriction_lifted_hook("activation", realtime.on_restriction_lifted)
        hooks.register_workspace_created_hook("activation", realtime.on_workspace_created)
        hooks.register_keys_personal_hook("activation", computed.on_keys_personal)
