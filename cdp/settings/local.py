"""The demo and local development: SQLite under var/ unless DATABASE_URL is set, and demo keys
generated into var/ on first run (cdp.core.crypto.demo_keys warns that they are for the demo)."""

from cdp.core.crypto.demo_keys import load_or_create_demo_keys
from cdp.core.env import env
from cdp.settings.base import *  # noqa: F403
from cdp.settings.base import VAR_DIR

DEBUG = True
_demo = load_or_create_demo_keys(VAR_DIR)
SECRET_KEY = env("DJANGO_SECRET_KEY") or _demo.secret_key
CDP_MASTER_KEYS = env("CDP_MASTER_KEYS") or _demo.master_keys
CDP_INDEX_KEY = env("CDP_INDEX_KEY") or _demo.index_key
