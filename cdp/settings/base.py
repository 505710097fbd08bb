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
    "matching",
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
    # SQLite keeps covering indexes (consent's gate probe) as plain ones: the same lookups,
    # answered from the table; the warning would greet every demo command.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not env_bool(
    "CDP_DATABASE_JIT", False
):
    # PostgreSQL JIT-compiles every query whose estimated cost passes jit_above_cost: the
    # small gated audience queries spent several ms of their 25 compiling (gated ratio 1.22 to
    # 1.28 with it, 1.05 to 1.07 without; the big audiences move 5 % either way; see
    # docs/benchmarks.md). Off for this application's sessions, as a startup option, unless
    # CDP_DATABASE_JIT is set or the URL's options name jit already. Behind PgBouncer, which
    # refuses `jit` in the startup options, set CDP_DATABASE_JIT=true and
    # `ALTER ROLE .. SET jit = off` on the server instead.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    if "jit" not in str(_options.get("options", "")):
        _options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
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
    "DEFAULT_PARSER_CLASSES": ["cdp.core.api.parsers.JSONParser"],
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
    # Several activation models have a `status` of their own choices.
    "ENUM_NAME_OVERRIDES": {
        "AudienceStatusEnum": "activation.enums.AudienceStatus",
        "SyncRunStatusEnum": "activation.enums.SyncRunStatus",
        "DeliveryStatusEnum": "activation.enums.DeliveryStatus",
    },
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
# Celery's Django fix-up closes every database connection before and after each task unless
# this is set (then only every that many tasks), so each intake drain paid a new PostgreSQL
# backend: a fork, authentication and cold catalog caches, some 400 a 40,000-event run.
# Workers keep their connection instead, and cdp/celery.py applies CONN_MAX_AGE and the health
# check around each task as Django does around each request (docs/benchmarks.md).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
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
    "retention-apply": {
        "task": "governance.tasks.retention_apply",
        "schedule": timedelta(hours=24),
    },
    # Consent grants older than their purpose's validity (Purpose.consent_validity_days).
    "consent-grants-expire": {
        "task": "consent.tasks.consent_grants_expire",
        "schedule": timedelta(hours=24),
    },
    "dsr-fulfilments-due": {
        "task": "governance.tasks.dsr_fulfilments_due",
        "schedule": timedelta(hours=1),
    },
    "activation-removals-send": {
        "task": "activation.tasks.removals_send_due",
        "schedule": timedelta(minutes=1),
    },
    "activation-syncs-due": {
        "task": "activation.tasks.syncs_start_due",
        "schedule": timedelta(minutes=1),
    },
    # Windowed values decay and non-realtime audiences catch up only when recomputed.
    "activation-computed-traits-recompute": {
        "task": "activation.tasks.computed_traits_recompute_all",
        "schedule": timedelta(hours=1),
    },
    "activation-audiences-refresh": {
        "task": "activation.tasks.audiences_refresh_all",
        "schedule": timedelta(minutes=15),
    },
    # Probabilistic matching of the workspaces that set it up (review queue): incremental,
    # full once a week (MATCHING_FULL_RUN_DAYS).
    "matching-runs-due": {
        "task": "matching.tasks.match_runs_due",
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
if CELERY_TASK_ALWAYS_EAGER:
    # No broker: tasks run in the process that queues them (the demo, imports from the
    # command line). Celery still makes a producer, and kombu warns, for every task, that
    # the unset broker defaults to localhost; and one "Task ... succeeded" line per task
    # (hundreds while the demo loads) would bury what a reader needs. Failures still log.
    LOGGING["loggers"] |= {  # type: ignore[operator]
        "kombu.connection": {"level": "ERROR"},
        "celery.app.trace": {"level": "WARNING"},
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
# The intake buffer's shards (one drain at a time per shard: more drain workers than shards
# idle) and the messages one drain transaction takes at most (collect.intake).
COLLECT_INTAKE_SHARDS = env_int("COLLECT_INTAKE_SHARDS", 4)
COLLECT_DRAIN_MESSAGES = env_int("COLLECT_DRAIN_MESSAGES", 2000)
# Bulk import: how long a job's error file can be downloaded before it is shredded, and how
# many errors it lists at most (the rest are counted only).
COLLECT_IMPORT_ERRORS_DAYS = env_int("COLLECT_IMPORT_ERRORS_DAYS", 14)
COLLECT_IMPORT_MAX_ERROR_LINES = env_int("COLLECT_IMPORT_MAX_ERROR_LINES", 10_000)
# The largest file the admin's upload accepts (it is stored sealed in the database until a
# worker has imported it); larger files go through `manage.py import_profiles|import_events`,
# which read them from disk.
COLLECT_IMPORT_MAX_UPLOAD_BYTES = env_int("COLLECT_IMPORT_MAX_UPLOAD_BYTES", 1024**3)
# Planner statistics of fast-growing tables (cdp.core.dbstats): after ingestion, at most every
# CDP_ANALYZE_SECONDS per process (0: never), ANALYZE the tables whose changed rows exceed
# max(CDP_ANALYZE_MIN_ROWS, CDP_ANALYZE_FRACTION x rows) since their last analyze.
CDP_ANALYZE_SECONDS = env_int("CDP_ANALYZE_SECONDS", 10)
CDP_ANALYZE_MIN_ROWS = env_int("CDP_ANALYZE_MIN_ROWS", 1000)
CDP_ANALYZE_FRACTION = float(env("CDP_ANALYZE_FRACTION", "0.5") or "0.5")
# Bulk writes by COPY through session temporary tables (cdp.core.bulk); off behind a pooler
# that hands sessions around per transaction.
CDP_BULK_COPY = env_bool("CDP_BULK_COPY", True)
# How long a process keeps a source found by its write key (profiles.selectors; a change
# saved in the process evicts it at once, other processes see it within this time).
CDP_SOURCE_CACHE_SECONDS = env_int("CDP_SOURCE_CACHE_SECONDS", 5)
# How long a process keeps a workspace's identity rules and trait classifications.
CDP_WORKSPACE_CONFIG_SECONDS = env_int("CDP_WORKSPACE_CONFIG_SECONDS", 10)

# The scheduled matching run is a full one (parameters estimated again, every profile's match
# keys made again) once the workspace's last full run is this many days old; 0: never.
MATCHING_FULL_RUN_DAYS = env_int("MATCHING_FULL_RUN_DAYS", 7)
# With workers (a broker), the exports and erasures a steward fulfils are queued for the dsr
# worker rather than carried out in the web request (an erasure first waits, up to 30 s, for
# the intake buffer to settle).
GOVERNANCE_FULFIL_IN_WORKER = env_bool("GOVERNANCE_FULFIL_IN_WORKER", bool(CELERY_BROKER_URL))
# How long a subject's access/portability export can be downloaded.
GOVERNANCE_EXPORT_TTL_DAYS = env_int("GOVERNANCE_EXPORT_TTL_DAYS", 7)
# Hours after verification during which a subject may cancel an erasure and nothing is erased
# (0: none); a workspace may set its own in its governance settings.
CDP_ERASURE_CANCELLATION_HOURS = env_int("CDP_ERASURE_CANCELLATION_HOURS", 0)
# The public address of this CDP, for links sent to people (exports, preference centre).
CDP_PUBLIC_URL = env("CDP_PUBLIC_URL", "http://127.0.0.1:8000")

# --- Activation: syncs to destinations -------------------------------------------------------
# File destinations (CSV, JSONL, ad-platform upload files) write under <dir>/<workspace slug>/.
CDP_EXPORT_DIR = Path(env("CDP_EXPORT_DIR", str(VAR_DIR / "exports")) or VAR_DIR / "exports")
# Profiles per batch of a sync run: consent is evaluated, identifiers decrypted and records
# sent one batch at a time.
CDP_SYNC_BATCH_SIZE = env_int("CDP_SYNC_BATCH_SIZE", 500)
# An add dead-lettered this many times for a destination and audience is no longer sent again
# by incremental runs (a record the destination keeps refusing); a full run still sends it.
CDP_SYNC_MAX_RESENDS = env_int("CDP_SYNC_MAX_RESENDS", 3)
# A webhook receiver may ask a sync's additions to wait (a Retry-After longer than
# CDP_WEBHOOK_MAX_WAIT_SECONDS) this many runs in a row; the run it asks so for the last time
# fails, its batch dead-lettered, so that a receiver that always asks to wait is seen.
CDP_SYNC_MAX_DEFERRALS = env_int("CDP_SYNC_MAX_DEFERRALS", 5)
# A queued or running sync run older than this is taken as abandoned (its worker died).
CDP_SYNC_STALE_MINUTES = env_int("CDP_SYNC_STALE_MINUTES", 120)
# Queued removals: attempts before the dead letter, and the first retry delay (doubling).
CDP_REMOVAL_MAX_ATTEMPTS = env_int("CDP_REMOVAL_MAX_ATTEMPTS", 8)
CDP_REMOVAL_RETRY_SECONDS = env_int("CDP_REMOVAL_RETRY_SECONDS", 60)
# Webhook destinations: attempts per request (exponential backoff from the base delay) before
# the batch is dead-lettered, and whether a URL may point at a private or loopback address.
CDP_WEBHOOK_MAX_ATTEMPTS = env_int("CDP_WEBHOOK_MAX_ATTEMPTS", 5)
CDP_WEBHOOK_RETRY_BASE_MS = env_int("CDP_WEBHOOK_RETRY_BASE_MS", 1000)
# The waits between the attempts of one webhook request, in all: when the next wait (a
# Retry-After, say) would pass it, the batch is left for a later run or removal retry, so
# that a slow receiver does not hold a worker.
CDP_WEBHOOK_MAX_WAIT_SECONDS = env_int("CDP_WEBHOOK_MAX_WAIT_SECONDS", 120)
CDP_WEBHOOK_ALLOW_PRIVATE = env_bool("CDP_WEBHOOK_ALLOW_PRIVATE", False)
