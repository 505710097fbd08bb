from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "cdp.core"
    label = "cdp_core"
    verbose_name = "CDP core"

    def ready(self) -> None:
        from cdp.core.crypto import keyring

        keyring.connect_settings_reset()
