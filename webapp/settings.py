"""Vintner settings: everything comes from the environment, with embedded defaults for one box.

One box (the default): SQLite and media under VINTNER_DATA_DIR, a local Redis.
Many hosts: DATABASE_URL (PostgreSQL), REDIS_URL, STORAGE_BACKEND=s3 and the S3_* variables.
VINTNER_PRODUCTION=1 switches on the HTTPS-only hardening that `check --deploy` asks for.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
import psutil as _psutil
from botocore.config import Config as BotoConfig
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


PRODUCTION = env_bool("VINTNER_PRODUCTION")
DEBUG = env_bool("DEBUG")
DATA_DIR = Path(env_str("VINTNER_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """A production site must be given its key; one box keeps a generated key in DATA_DIR."""
    key = env_str("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when VINTNER_PRODUCTION=1.")
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        # 0600 from the first byte, and published atomically: processes starting together agree on one key.
        draft = DATA_DIR / f".secret_key.{os.getpid()}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "webapp.core",
    "webapp.teams",
    "webapp.projects",
    "webapp.hosts",
    "webapp.jobs",
    "webapp.uploads",
    "webapp.datasets",
    "webapp.registry",
    "webapp.optimize",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out sign-in into its 429 page
]

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"
WSGI_APPLICATION = None

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
                "webapp.teams.context_processors.team_switcher",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'vintner.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE avoids lock upgrades
    # failing mid-transaction when both write.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file (not :memory:) so that worker and server processes in tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-vintner.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
MEDIA_URL = "/media/"

# Resumable uploads land here on the web host while they arrive (tus), then move to storage.
UPLOAD_DIR = Path(env_str("VINTNER_UPLOAD_DIR", str(DATA_DIR / "uploads")))
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_GB", 50) * 2**30
# One PATCH is buffered whole by the ASGI server before the view sees it: keep chunks small.
UPLOAD_CHUNK_MAX_BYTES = env_int("UPLOAD_CHUNK_MAX_MB", 64) * 2**20
UPLOAD_EXPIRY_HOURS = env_int("UPLOAD_EXPIRY_HOURS", 24)
# Every other request body, refused (413) before it is read (webapp/core/body_limits.py): a
# signed-in request's, and an anonymous one's (signing in takes a few hundred bytes).
BODY_MAX_BYTES = env_int("BODY_MAX_MB", 4) * 2**20
BODY_MAX_ANONYMOUS_BYTES = env_int("BODY_MAX_ANONYMOUS_KB", 64) * 2**10
# A failed import keeps its archive (to try again) for this long; then the sweep deletes it.
FAILED_IMPORT_EXPIRY_DAYS = env_int("FAILED_IMPORT_EXPIRY_DAYS", 7)
# How often a worker's reconciler sweeps expired failed imports and files whose rows are gone.
CLEANUP_SECONDS = env_int("CLEANUP_SECONDS", 3600)
TEAM_QUOTA_GB = env_int("TEAM_QUOTA_GB", 200)
# Each team brings a quota of its own: site admins make teams; other accounts up to this many
# teams they own (0: none).
TEAMS_PER_USER = env_int("TEAMS_PER_USER", 0)
# Hard limits on what one dataset archive may unpack to (bytes actually written, not headers).
DATASET_MAX_EXTRACTED_BYTES = env_int("DATASET_MAX_EXTRACTED_GB", 100) * 2**30
DATASET_MAX_FILES = env_int("DATASET_MAX_FILES", 2_000_000)
DATASET_MAX_COMPRESSION_RATIO = env_int("DATASET_MAX_COMPRESSION_RATIO", 200)
# A text dataset's limits: rows in all, one row file's size (it is read whole), one text's length.
DATASET_TEXT_MAX_ROWS = env_int("DATASET_TEXT_MAX_ROWS", 2_000_000)
DATASET_TEXT_MAX_FILE_BYTES = env_int("DATASET_TEXT_MAX_FILE_MB", 512) * 2**20
DATASET_TEXT_MAX_CHARS = env_int("DATASET_TEXT_MAX_CHARS", 20_000)

STORAGE_BACKEND = env_str("STORAGE_BACKEND", "local")
# Single-file downloads on S3 go to the browser as presigned links, signed for the bucket's address
# as browsers reach it (a proxy's, a CDN's); the in-cluster S3_ENDPOINT_URL when unset.
S3_PUBLIC_ENDPOINT_URL = env_str("S3_PUBLIC_ENDPOINT_URL")
DOWNLOAD_LINK_SECONDS = env_int("DOWNLOAD_LINK_SECONDS", 600)
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET", "vintner"),
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "access_key": env_str("S3_ACCESS_KEY") or None,
            "secret_key": env_str("S3_SECRET_KEY") or None,
            "region_name": env_str("S3_REGION") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            # webapp/core/files.py streams every transfer itself; anything else opening an object
            # gets a file that spills to disk past 16 MiB instead of growing in memory.
            "max_memory_size": 16 * 2**20,
            # No CRC32 per request on top of what already proves the bytes: with no other checksum
            # sent, botocore signs a SHA-256 of every body into SigV4 and the server checks it. The
            # second checksum cost about a fifth of the upload speed on loopback (bench/hosts.py).
            "client_config": BotoConfig(request_checksum_calculation="when_required"),
        },
    }
elif STORAGE_BACKEND == "local":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 'local' or 's3', not {STORAGE_BACKEND!r}.")

STORAGES = {
    "default": _default_storage,
    # Production serves collected, hashed files; one box serves straight from static/.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# --- Redis, Channels, Celery ----------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels_redis waits up to 5 s in BZPOPMIN; redis-py's default socket timeout is also 5 s,
        # which would kill every idle websocket consumer. Give the socket room beyond the poll.
        # After a Redis restart the pool still holds dead sockets: reconnect and retry, instead of
        # failing the next websocket handshakes with a 500.
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 30,
                    "retry": Retry(ExponentialBackoff(cap=2, base=0.1), 3),
                    "retry_on_error": [RedisConnectionError],
                }
            ],
            "prefix": "vintner:asgi",
        },
    }
}

# The longest job we allow; the broker must not hand a task to a second worker before it ends.
JOB_TIME_LIMIT = env_int("JOB_TIME_LIMIT", 24 * 3600)
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 15)

CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", JOB_TIME_LIMIT + 3600)}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker takes a message only when a process of its pool is free: with concurrency > 1 a killed
# worker holds no waiting messages in Redis's "unacked" (they would wait out the visibility timeout
# while the reconciler takes them for queued); its running jobs' leases lapse and are recovered.
CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_TASK_TIME_LIMIT = JOB_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = JOB_TIME_LIMIT - 60
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "optimize"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_WORKER_DIRECT = True  # each worker also consumes "<nodename>.dq2", for per-host tasks
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"

# --- Rate limits and lockouts (docs/operations.md) -----------------------------------------
# The counters live in Redis, shared by every web process. A rate is "<count>/<s|min|hour|day>".
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "vintner:cache",
    }
}
THROTTLE_RATES = {
    "login": env_str("THROTTLE_LOGIN", "20/min"),  # sign-in attempts per address (page and token)
    "uploads": env_str("THROTTLE_UPLOADS", "30/min"),  # uploads started per user
    "jobs": env_str("THROTTLE_JOBS", "30/min"),  # jobs submitted per user
}
# django-axes: after LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for LOGIN_LOCKOUT_MINUTES (a 429); a success in between starts the count again.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webapp.core.throttles.lockout_response"
AXES_VERBOSE = False
# API tokens (webapp/core/tokens.py) expire this many days after they are issued, unless asked shorter.
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90)

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes a missing or wrong token a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.core.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.core.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Vintner API",
    "DESCRIPTION": "Datasets, models, training and OpenVINO optimization jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served by the product itself: no CDN, works air-gapped.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Production hardening -------------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off when VINTNER_PRODUCTION=1.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Jobs -----------------------------------------------------------------------------------
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30)  # renewed every third of this while a job runs
JOB_CANCEL_GRACE_SECONDS = env_int("JOB_CANCEL_GRACE_SECONDS", 15)  # then a cancelled job is killed
JOB_REQUEUE_AFTER_SECONDS = env_int("JOB_REQUEUE_AFTER_SECONDS", 30)  # a queued job missing from the broker
RECONCILE_SECONDS = env_int("RECONCILE_SECONDS", 10)
# How many jobs of one team may be started on a queue at once (running, or sent to the broker for
# the next free worker); more wait in the database and get their turns round-robin across teams
# as slots free up (webapp/jobs/services.py jobs_release). 0: no limit.
TEAM_RUNNING_JOBS = {"train": env_int("TEAM_RUNNING_JOBS_TRAIN", 2), "optimize": env_int("TEAM_RUNNING_JOBS_OPTIMIZE", 4)}
# A live page's socket joins its group again and reads the store this often: after a Redis
# restart (which forgets every group) it is back in step within this time, with no reload.
LIVE_RESYNC_SECONDS = env_int("LIVE_RESYNC_SECONDS", 5)
# What killed attempts left in storage (webapp/core/sweep.py, with the CLEANUP_SECONDS sweeps) goes
# once older than this: a publish in flight writes its objects before its row commits.
SWEEP_GRACE_SECONDS = env_int("SWEEP_GRACE_SECONDS", 6 * 3600)

# --- The jail (workers/jail.py, docs/architecture.md) ---------------------------------------
# "bwrap": every job's pipeline runs under bubblewrap. "off": an administrator's explicit choice
# to run jobs unjailed (each job's log says so); never chosen by Vintner itself.
VINTNER_JAIL = env_str("VINTNER_JAIL", "bwrap")
if VINTNER_JAIL not in ("bwrap", "off"):
    raise ImproperlyConfigured("VINTNER_JAIL is 'bwrap' (the default) or 'off'.")
JAIL_UID = env_int("JAIL_UID", 61000)  # a root worker's jobs run as JAIL_UID + job number mod 1000 (no accounts)
JAIL_MEMORY_GB = float(env_str("JAIL_MEMORY_GB", "0")) or round(0.75 * _psutil.virtual_memory().total / 2**30, 1)
JAIL_MAX_PROCESSES = env_int("JAIL_MAX_PROCESSES", 1024)  # processes and threads of one job
JAIL_MAX_FILE_GB = float(env_str("JAIL_MAX_FILE_GB", "64"))
# Training's decoded-image cache (workers/pipeline/imagecache.py): on the worker's local disk, one
# entry per dataset version and training size, least recently used entries evicted past the cap.
IMAGE_CACHE_DIR = Path(env_str("VINTNER_IMAGE_CACHE_DIR", str(DATA_DIR / "cache" / "images")))
IMAGE_CACHE_GB = float(env_str("VINTNER_IMAGE_CACHE_GB", "50"))
# torchvision's pretrained weights, if an administrator put them here (README), read-only in jails
TORCH_HOME = Path(env_str("TORCH_HOME", str(Path(env_str("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "torch")))
