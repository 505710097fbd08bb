from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Probabilistic matching"

    def ready(self) -> None:
        from cdp.core import audit, registry
        from matching import handlers, models

        audit.register(models.MatchSettings)
        audit.register(models.MatchRun, exclude_fields=("stats", "parameters"))
        audit.register(models.MatchCandidate, exclude_fields=("comparison",))
        registry.register(handlers.CANDIDATES_HANDLER)
        registry.register(handlers.KEYS_HANDLER)
