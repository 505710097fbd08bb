"""Health check of the Celery broker for /health/ (database and cache use django-health-check's
own checks). Without a broker, tasks run eagerly and there is nothing to reach."""

from __future__ import annotations

import dataclasses

from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable


@dataclasses.dataclass
class Broker(HealthCheck):
    def run(self) -> None:
        from celery import current_app as app

        if app.conf.task_always_eager or not app.conf.broker_url:
            return
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceUnavailable("The Celery broker cannot be reached") from exc

    def pretty_status(self) -> str:
        from celery import current_app as app

        return "OK (eager, no broker)" if app.conf.task_always_eager else "OK"
