from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles and identity"

    def ready(self) -> None:
        from cdp.core import audit, registry
        from cdp.core.crypto import register_data_key_store
        from profiles import handlers, models
        from profiles.keystore import DataKeyModelStore

        register_data_key_store(DataKeyModelStore())
        for model in (models.Workspace, models.ApiToken, models.Profile):
            audit.register(model, exclude_fields=("token_hash",))
        audit.register(models.DataKey, exclude_fields=("wrapped",))
        registry.register(handlers.PROFILE_HANDLER)
