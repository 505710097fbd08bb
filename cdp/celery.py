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


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(sender: Any = None, **kwargs: Any) -> None:
    """A worker's task gets the connection lifecycle of a request: one past CONN_MAX_AGE, or
    broken (CONN_HEALTH_CHECKS), is closed before the task and after it; a sound one is kept,
    since settings.CELERY_DB_REUSE_MAX stops Celery from closing every connection itself. Not
    for an eager task (the demo, tests), which runs inside its caller's request or transaction,
    as Celery's own fix-up does not."""
    if sender is None or getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
