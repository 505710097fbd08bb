"""The Celery application. Without CELERY_BROKER_URL every task runs eagerly in-process (the demo
and the unit tests); with it, tasks go to named queues: default, ingest, consent, dsr,
governance."""

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.local")

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _log_through_settings(**kwargs: Any) -> None:
    """A worker logs through settings.LOGGING, whose handlers redact personal data; left alone,
    Celery would replace the root handlers with its own, unfiltered ones."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
