from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles and identity"

    def ready(self) -> None:
        from guardian.models import GroupObjectPermission, UserObjectPermission

        from cdp.core import audit, registry
        from cdp.core.crypto import register_data_key_store
        from profiles import handlers, models
        from profiles.keystore import DataKeyModelStore

        register_data_key_store(DataKeyModelStore())
        audit.register(models.Workspace)
        audit.register(models.ApiToken, exclude_fields=("token_hash",))
        audit.register(models.Source)
        audit.register(models.SourceSecret)
        audit.register(models.IdentityRule)
        audit.register(models.IdentityPolicy)
        audit.register(models.TraitSchema)
        audit.register(models.Profile, exclude_fields=("attributes",))
        audit.register(models.DataKey, exclude_fields=("wrapped",))
        audit.register(models.Identity)
        audit.register(models.Trait, exclude_fields=("value_attribute",))
        audit.register(models.Merge)
        audit.register(models.MergeConflict)
        # Steward roles are guardian object permissions: granting or revoking one is a change
        # by someone, and the audit trail must show it (privacy invariant 4).
        audit.register(UserObjectPermission)
        audit.register(GroupObjectPermission)
        audit.register(models.WorkspaceUserObjectPermission)
        audit.register(models.WorkspaceGroupObjectPermission)
        # Event, IdentityLink and SeenMessage are high-volume evidence written only by the
        # ingestion pipeline in bulk; their own rows are the record (see docs/architecture.md).
        for handler in handlers.HANDLERS:
            registry.register(handler)
