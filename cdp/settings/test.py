"""The test suite: keys are fixed test values (never used anywhere else); the database is
SQLite in memory unless DATABASE_URL is set (CI sets PostgreSQL)."""

import base64

from cdp.settings.base import *  # noqa: F403
from cdp.settings.base import DATABASES

SECRET_KEY = "test-only-secret-key-not-for-production-use-0123456789"  # noqa: S105
CDP_MASTER_KEYS = "k1:" + base64.b64encode(b"\x01" * 32).decode()
CDP_INDEX_KEY = base64.b64encode(b"\x02" * 32).decode()
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = None
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}
COLLECT_ASYNC_INTAKE = False  # tests of the asynchronous intake turn it on themselves
CDP_WORKSPACE_CONFIG_SECONDS = 0  # tests change rules and expect them at once
GOVERNANCE_FULFIL_IN_WORKER = False  # tests of the queued fulfilment turn it on themselves
