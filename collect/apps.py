from django.apps import AppConfig


class CollectConfig(AppConfig):
    name = "collect"
    verbose_name = "Collection and ingestion"

    def ready(self) -> None:
        from cdp.core import audit, registry
        from collect import handlers, models

        # IntakeBatch is not auditlog-registered: a transient buffer written per request
        # and deleted within seconds by the pipeline, like the other ingestion tables; so is
        # ImportChunk (an upload waiting for its worker). An ImportJob's creation and outcome
        # are audited (its progress counters are written in bulk, without entries).
        audit.register(models.ImportJob)
        registry.register(handlers.INTAKE_HANDLER)
        registry.register(handlers.IMPORTS_HANDLER)
