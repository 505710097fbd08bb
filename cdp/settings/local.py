"""The demo and local development: SQLite under var/ unless DATABASE_URL is set, and demo keys
generated into var/ on first run (cdp.core.crypto.demo_keys warns that they are for the demo)."""

from cdp.core.crypto.demo_keys import load_or_create_demo_keys
from cdp.core.env import env
from cdp.settings.base import *  # noqa: F403
from cdp.settings.base import CELERY_TASK_ALWAYS_EAGER, LOGGING, VAR_DIR

DEBUG = True
_demo = load_or_create_demo_keys(VAR_DIR)
SECRET_KEY = env("DJANGO_SECRET_KEY") or _demo.secret_key
CDP_MASTER_KEYS = env("CDP_MASTER_KEYS") or _demo.master_keys
CDP_INDEX_KEY = env("CDP_INDEX_KEY") or _demo.index_key

_loggers: dict[str, object] = dict(LOGGING["loggers"])  # type: ignore[call-overload]
if CELERY_TASK_ALWAYS_EAGER:  # no broker: tasks run in the process that queues them
    # One "Task ... succeeded" line per task (hundreds while the demo loads) would bury what a
    # newcomer needs to read; failures still log at ERROR.
    LOGGING = {
        **LOGGING,
        "loggers": {**_loggers, "celery.app.trace": {"level": "WARNING"}},
    }
