"""Settings shared by every environment. Everything secret or site-specific comes from the
environment (see cdp.core.env); the local, test and production modules adjust defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from kombu import Queue

from cdp.core.env import env, env_bool, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env("CDP_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

SECRET_KEY = env("DJANGO_SECRET_KEY", "") or ""
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "auditlog",
    "health_check",
    "cdp.core",
    "profiles",
    "consent",
    "governance",
    "activation",
    "collect",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "collect.cors.CollectCorsMiddleware",  # answers /v1/ preflights before anything else
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"
ASGI_APPLICATION = "cdp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The demo's embedded default is a SQLite file under var/; CI and production set DATABASE_URL.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'cdp.sqlite3'}") or "",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the demo server and a worker share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env("REDIS_URL")}
        if env("REDIS_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous-user row; nothing is granted to anonymous

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

# --- API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["profiles.api.authentication.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["cdp.core.api.permissions.IsWorkspaceToken"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "cdp.core.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "cdp.core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CDP API",
    "DESCRIPTION": "Collection, consent, data-subject requests and management APIs.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # no CDN: the admin UI makes no third-party calls
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Audit ---------------------------------------------------------------------------------
AUDITLOG_LOGENTRY_MODEL = "governance.AuditLogEntry"
AUDITLOG_DISABLE_REMOTE_ADDR = True  # an IP address is personal data; the audit trail keeps none

# --- Crypto --------------------------------------------------------------------------------
# CDP_MASTER_KEYS: "id:base64key,id2:base64key"; the first is the primary key-encryption key.
CDP_MASTER_KEYS = env("CDP_MASTER_KEYS")
# CDP_INDEX_KEY: base64 secret the blind-index keys are derived from (HKDF), never used to encrypt.
CDP_INDEX_KEY = env("CDP_INDEX_KEY")
# How long an unwrapped data key may stay in a process's memory. Destroying a key evicts it at
# once in the destroying process; other processes stop using it within this many seconds.
CDP_DATA_KEY_CACHE_SECONDS = env_int("CDP_DATA_KEY_CACHE_SECONDS", 30)
# How long GET /v1/consent answers stay in the cache (0: not cached). Every consent write bumps
# its profile's version, so a change is visible at once; see consent.selectors.
CDP_CONSENT_CACHE_SECONDS = env_int("CDP_CONSENT_CACHE_SECONDS", 60)

# --- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND")
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "ingest", "consent", "dsr", "governance")]
CELERY_TASK_ROUTES = {
    "collect.*": {"queue": "ingest"},
    "profiles.*": {"queue": "ingest"},
    "consent.*": {"queue": "consent"},
    "governance.tasks.dsr_*": {"queue": "dsr"},
    "governance.*": {"queue": "governance"},
    "activation.*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE = {
    "intake-keys-shred": {
        "task": "collect.tasks.intake_keys_shred",
        "schedule": timedelta(hours=1),
    },
    "audit-chain-verify": {
        "task": "governance.tasks.audit_chain_verify",
        "schedule": timedelta(hours=24),
    },
}

# --- Logging -------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_pii": {"()": "cdp.core.logging.PiiRedactingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_pii"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Named so that Django's default handlers on them (a console handler when DEBUG,
        # mail_admins, django.server's own) are removed: records reach the root handler and
        # its redaction filter, never an unfiltered handler first.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # redis-py gives this logger its own stream handler unless it exists already.
        "push_response": {"handlers": [], "propagate": True},
    },
}
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "privacy@cdp.example.com")

# The model stewards are scoped by (like AUTH_USER_MODEL): admin lists show only rows of the
# workspaces a steward holds a role on.
CDP_WORKSPACE_MODEL = "profiles.Workspace"

# With a broker, collection answers once a request's valid messages are sealed in the intake
# buffer and workers run the identity pipeline; without one (the demo, unit tests) the
# pipeline runs inside the request.
COLLECT_ASYNC_INTAKE = env_bool("COLLECT_ASYNC_INTAKE", bool(CELERY_BROKER_URL))
# How long a process keeps a workspace's identity rules and trait classifications.
CDP_WORKSPACE_CONFIG_SECONDS = env_int("CDP_WORKSPACE_CONFIG_SECONDS", 10)

# How long a subject's access/portability export can be downloaded.
GOVERNANCE_EXPORT_TTL_DAYS = env_int("GOVERNANCE_EXPORT_TTL_DAYS", 7)
# The public address of this CDP, for links sent to people (exports, preference centre).
CDP_PUBLIC_URL = env("CDP_PUBLIC_URL", "http://127.0.0.1:8000")
