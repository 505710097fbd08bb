"""Production: every secret must come from the environment; the process refuses to start
without the master keys, the index key or a secret key, or with an email backend that writes
mail where it is read by others (see EMAIL_BACKEND below)."""

from django.core.exceptions import ImproperlyConfigured

from cdp.core.env import env, env_bool, env_int
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

# Mail carries secrets meant for one person: a data-subject request's verification code and
# the download link of an access export (its token is the only credential the link needs).
# The console backend (the base default, for the demo) would print them into the process's
# output, and from there into every log collector that reads it; the file backend writes them
# in plaintext to disk. So production sends by SMTP unless told otherwise, and refuses those
# two unless CDP_ALLOW_UNSAFE_EMAIL_BACKEND says that this deployment knowingly wants them
# (a staging box without a mail relay). The dummy and locmem backends deliver nowhere and are
# accepted (the benchmarks use them).
UNSAFE_EMAIL_BACKENDS = (
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_BACKEND = (
    env("EMAIL_BACKEND") or ""
).strip() or "django.core.mail.backends.smtp.EmailBackend"
if EMAIL_BACKEND in UNSAFE_EMAIL_BACKENDS and not env_bool("CDP_ALLOW_UNSAFE_EMAIL_BACKEND"):
    raise ImproperlyConfigured(
        f"EMAIL_BACKEND={EMAIL_BACKEND} writes verification codes and export download links "
        "where others can read them; use SMTP (the production default) or set "
        "CDP_ALLOW_UNSAFE_EMAIL_BACKEND=1 to accept that."
    )
EMAIL_HOST = env("EMAIL_HOST", "localhost") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS, usually port 465
# Without a timeout a relay that stops answering holds a worker (or a request) forever.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set EMAIL_USE_TLS or EMAIL_USE_SSL, not both.")
