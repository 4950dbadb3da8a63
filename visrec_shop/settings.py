"""Django settings for the visrec shop.

Every environment variable the project reads is read here and nowhere else:
``DATABASE_URL``, ``CELERY_BROKER_URL``, ``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS``,
``MEDIA_ROOT``, ``SERVE_MEDIA``, ``REDIS_URL``, ``CELERY_VISIBILITY_TIMEOUT``, ``VISREC_DATA_DIR``,
``VISREC_WEIGHTS_DIR``, ``VISREC_EMBED_BATCH_SIZE``, ``API_THROTTLE_RECOMMENDATIONS``,
``API_THROTTLE_SEARCH``, ``API_THROTTLE_EVENTS``, ``VISREC_SINGLE_PROCESS``, ``HTTPS_ONLY``,
``SECURE_SSL_REDIRECT``, ``SECURE_HSTS_SECONDS``, ``SECURE_HSTS_INCLUDE_SUBDOMAINS``, ``SECURE_HSTS_PRELOAD``,
``SECURE_PROXY_SSL_HEADER``, ``DATABASE_CONNECT_TIMEOUT``, ``REDIS_TIMEOUT``, ``NUM_PROXIES``,
``DATABASE_REPLICA_URLS``, ``DATABASE_REPLICA_MAX_LAG``.

Read replicas: ``DATABASE_REPLICA_URLS`` lists PostgreSQL streaming replicas of the
primary (``DATABASE_URL``), comma separated; they become the aliases ``replica1``,
``replica2``, ... in ``DATABASES``, ``VISREC["READ_REPLICAS"]`` and the
``recommendations.replicas.ReplicaRouter``. Serving reads (the widgets' and the API's lists)
run there; writes, the admin, workers and each shopper's own events stay on the primary. A
replica more than ``DATABASE_REPLICA_MAX_LAG`` seconds behind (default 2), or down, is
skipped for the primary. Unset: everything on the primary, as without replicas.
"""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from visrec_shop import dbserver, production

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _env_bool("DEBUG", False)
# With DEBUG off, a missing SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL or REDIS_URL stops the
# start with the list of what to set (visrec_shop/production.py), before anything falls back to
# the demo's defaults; VISREC_SINGLE_PROCESS=1 (the demo, tests, benchmarks) accepts them.
SINGLE_PROCESS = _env_bool(production.OPT_OUT, False)
production.check_environment(os.environ, debug=DEBUG, single_process=SINGLE_PROCESS)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")]
VAR_DIR = Path(os.environ.get("VISREC_DATA_DIR", BASE_DIR / "var"))
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip() or production.local_secret_key(VAR_DIR / "secret_key")

# HTTPS, on by default in production (DEBUG off, no VISREC_SINGLE_PROCESS): secure cookies, a
# redirect to https and HSTS, so `manage.py check --deploy` is clean. Behind a proxy that ends
# TLS, SECURE_PROXY_SSL_HEADER names the header it sets (X-Forwarded-Proto); unset, none is trusted.
HTTPS_ONLY = _env_bool("HTTPS_ONLY", not DEBUG and not SINGLE_PROCESS)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", HTTPS_ONLY)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS_ONLY else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS_ONLY)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", HTTPS_ONLY)
if os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    _header = os.environ["SECURE_PROXY_SSL_HEADER"].strip().upper().replace("-", "_")
    SECURE_PROXY_SSL_HEADER = (f"HTTP_{_header}", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "catalog",
    "recommendations",
]

MIDDLEWARE = [
    "visrec_shop.middleware.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "recommendations.uploads.RequestBodyLimitMiddleware",  # before the CSRF check reads (and spools) a body
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "visrec_shop.urls"
WSGI_APPLICATION = "visrec_shop.wsgi.application"
# Sessions are read from the cache and written through to the database; a database
# outage degrades them to cache-only (visrec_shop/sessions.py), so pages keep answering.
SESSION_ENGINE = "visrec_shop.sessions"

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
                "catalog.context_processors.categories",
            ],
        },
    },
]

# PostgreSQL with pgvector is the only supported database: an external server via
# DATABASE_URL (pgvector >= 0.7), otherwise the embedded one under var/pgdata.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=600)}
else:
    DATABASES = {"default": dbserver.embedded_database(VAR_DIR / "pgdata")}
# Read replicas: PostgreSQL streaming replicas of DATABASE_URL's server, comma separated
# (aliases replica1, replica2, ...). The widgets' and the API's lists are read there, writes and
# the shopper's own events stay on the primary (recommendations/replicas.py); a replica further
# behind than DATABASE_REPLICA_MAX_LAG seconds, or down, is skipped. Unset: everything on the primary.
REPLICA_URLS = [url.strip() for url in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if url.strip()]
for _n, _url in enumerate(REPLICA_URLS, start=1):
    # in tests a replica alias is the test database itself (nothing is created or migrated on it)
    DATABASES[f"replica{_n}"] = {**dj_database_url.parse(_url, conn_max_age=600), "TEST": {"MIRROR": "default"}}
for _database in DATABASES.values():
    _database.setdefault("OPTIONS", {})
    # Serving: keep connections between requests (no connect per request; a new PostgreSQL backend
    # also starts with cold caches, which shows in the first queries' latency); check a reused one first.
    _database["CONN_MAX_AGE"] = _database.get("CONN_MAX_AGE") or 600
    _database["CONN_HEALTH_CHECKS"] = True
    # A database host that does not answer fails a connection within seconds instead of holding
    # the request (libpq's connect_timeout, whole seconds, at least 2); a URL's own value wins.
    _database["OPTIONS"].setdefault("connect_timeout", int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "3")))
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("VISREC_TEST_DATABASE", "test_visrec")}
if REPLICA_URLS:
    DATABASE_ROUTERS = ["recommendations.replicas.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Production serves media from the web server (README, "Production configuration").
SERVE_MEDIA = _env_bool("SERVE_MEDIA", DEBUG or SINGLE_PROCESS)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Celery: no broker configured -> tasks run in-process so the demo works anywhere.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or None)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Three worker pools (README, "Worker pools"): "embeddings" (image vectors: CPU, or one process
# per GPU), "training" (long, memory-hungry fits: one process) and "default" (imports and
# housekeeping). Every task is routed here by name, so a task sent by name (beat, send_task)
# lands on the same queue as one sent from its function; tests/recommendations/test_queues.py
# checks that no task is left to chance.
CELERY_TASK_ROUTES = {
    "recommendations.tasks.embed_images": {"queue": "embeddings"},
    "recommendations.tasks.embed_missing": {"queue": "embeddings"},
    "recommendations.tasks.reembed_missing_and_failed": {"queue": "embeddings"},
    "recommendations.tasks.match_overlay": {"queue": "embeddings"},
    "recommendations.tasks.train_models": {"queue": "training"},
    "recommendations.tasks.fit_similarity_head": {"queue": "training"},
    "recommendations.tasks.sweep_stale_runs": {"queue": "default"},
    "recommendations.tasks.whatif_replay": {"queue": "default"},
    "catalog.tasks.import_products": {"queue": "default"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# An unacknowledged task (its worker died) is redelivered after this many seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
CELERY_BEAT_SCHEDULE = {
    # Safety net: images left without a vector (lost task, version switch) are queued again.
    "visrec-embed-missing": {"task": "recommendations.tasks.embed_missing", "schedule": 600.0},
    # Runs left "running" by a worker that died are failed with the reason (also at worker start).
    "visrec-sweep-stale-runs": {"task": "recommendations.tasks.sweep_stale_runs", "schedule": 300.0},
    # Nightly retraining at 03:00 UTC; a new version is activated only when it is better.
    "visrec-train-nightly": {"task": "recommendations.tasks.train_models", "schedule": crontab(hour=3, minute=0)},
}

REDIS_URL = os.environ.get("REDIS_URL", "")
# The cache is an optimisation: a Redis that does not answer within REDIS_TIMEOUT seconds
# counts as down (visrec_shop/cache.py fails fast for a moment, callers fall back).
REDIS_TIMEOUT = float(os.environ.get("REDIS_TIMEOUT", "0.25"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "visrec_shop.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def _throttle_rate(name: str, default: str) -> str | None:
    """A DRF rate such as ``120/min`` from ``API_THROTTLE_<NAME>``; ``off`` disables the limit."""
    value = os.environ.get(f"API_THROTTLE_{name}", default).strip()
    return None if value.lower() in {"", "off", "none"} else value


# The API: token auth for server-to-server clients, the session for the shop (CSRF as DRF
# enforces it). Anonymous and shopper calls are throttled per scope (per IP / per user)
# in the default cache (Redis when REDIS_URL is set); token clients are not throttled.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "recommendations.api.authentication.ExpiringTokenAuthentication",  # VISREC["TOKEN_TTL_DAYS"]
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["recommendations.api.throttling.ShopperRateThrottle"],
    # Reverse proxies in front of the site that append to X-Forwarded-For (0: the header is ignored).
    "NUM_PROXIES": int(os.environ.get("NUM_PROXIES", "0")),
    "DEFAULT_THROTTLE_RATES": {
        "recommendations": _throttle_rate("RECOMMENDATIONS", "300/min"),
        "search": _throttle_rate("SEARCH", "30/min"),
        "events": _throttle_rate("EVENTS", "600/min"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "recommendations.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "visrec API",
    "DESCRIPTION": "Visual recommendations: similar items, for you, search by photo, popular products and "
    'shopper events. Every error body is `{"error": {"code", "message", ...}}`.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from the local sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

VISREC_PRODUCT_MODEL = "catalog.Product"
VISREC_PRODUCT_ADAPTER = "catalog.adapter.CatalogAdapter"
VISREC = {
    "WEIGHTS_DIR": os.environ.get("VISREC_WEIGHTS_DIR", ""),
    "EMBED_BATCH_SIZE": int(os.environ.get("VISREC_EMBED_BATCH_SIZE", "32")),
    "CACHE_DIR": str(VAR_DIR / "cache"),
    "READ_REPLICAS": [f"replica{n}" for n in range(1, len(REPLICA_URLS) + 1)],
    "REPLICA_MAX_LAG_SECONDS": float(os.environ.get("DATABASE_REPLICA_MAX_LAG", "2")),
}
# The HNSW index: search breadth (a benchmark sets the one it chose) and how a version's index is built.
for _name in ("HNSW_EF_SEARCH", "HNSW_M", "HNSW_EF_CONSTRUCTION"):
    if os.environ.get(f"VISREC_{_name}"):
        VISREC[_name] = int(os.environ[f"VISREC_{_name}"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "catalog": {"handlers": ["console"], "level": "INFO"},
        "recommendations": {"handlers": ["console"], "level": "INFO"},
    },
}
