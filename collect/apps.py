from django.apps import AppConfig


class CollectConfig(AppConfig):
    name = "collect"
    verbose_name = "Collection and ingestion"

    def ready(self) -> None:
        from cdp.core import registry
        from collect import handlers

        # IntakeBatch is not auditlog-registered: a transient buffer written per request
        # and deleted within seconds by the pipeline, like the other ingestion tables.
        registry.register(handlers.INTAKE_HANDLER)
