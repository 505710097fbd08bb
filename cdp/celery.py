"""The Celery application. Without CELERY_BROKER_URL every task runs eagerly in-process (the demo
and the unit tests); with it, tasks go to named queues: default, ingest, consent, dsr, governance."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.local")

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
