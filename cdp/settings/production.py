"""Production: every secret must come from the environment; the process refuses to start
without the master keys, the index key or a secret key."""

from django.core.exceptions import ImproperlyConfigured

from cdp.settings.base import *  # noqa: F403
from cdp.settings.base import CDP_INDEX_KEY, CDP_MASTER_KEYS, SECRET_KEY

DEBUG = False
for _name, _value in (
    ("CDP_MASTER_KEYS", CDP_MASTER_KEYS),
    ("CDP_INDEX_KEY", CDP_INDEX_KEY),
    ("DJANGO_SECRET_KEY", SECRET_KEY),
):
    if not _value:
        raise ImproperlyConfigured(f"{_name} must be set in production (or {_name}_FILE).")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
