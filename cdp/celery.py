"""The Celery application. Without CELERY_BROKER_URL every task runs eagerly in-process (the demo
and the unit tests); with it, tasks go to named queues: default, ingest, consent, dsr,
governance."""

import os
from typing import Any

from celery import Celery, signals

# Production unless told otherwise, like cdp/wsgi.py and cdp/asgi.py: every process imports this
# module first (cdp/__init__.py), so a default here is the default of every entry point but
# manage.py (which sets the demo settings before). A process started without keys refuses.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.production")

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


@signals.worker_process_init.connect
def _gc_after_fork(**kwargs: Any) -> None:
    """Each pool process freezes the objects of its start-up (cdp.core.gc)."""
    from cdp.core.gc import gc_tune

    gc_tune()
