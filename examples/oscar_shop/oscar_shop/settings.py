"""Settings of the oscar example shop: django-oscar out of the box, plus visrec.

Everything visrec needs is in the block marked "visrec"; the rest is oscar's documented
set-up. Environment: ``DATABASE_URL`` (required: PostgreSQL with pgvector; ``make
oscar-demo`` passes one for the embedded server), ``OSCAR_SHOP_DATA_DIR`` (media, caches;
default ``var/`` beside this project), ``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS``,
``CELERY_BROKER_URL`` (unset: visrec's tasks run in-process), ``VISREC_WEIGHTS_DIR``.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from oscar import INSTALLED_APPS as OSCAR_APPS
from oscar.defaults import *  # noqa: F403  (oscar's OSCAR_* defaults)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("OSCAR_SHOP_DATA_DIR", BASE_DIR / "var"))

DEBUG = os.environ.get("DEBUG", "0") == "1"
SECRET_KEY = os.environ.get("SECRET_KEY", "oscar-example-insecure-development-key")
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    *OSCAR_APPS,
    "sorl.thumbnail",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "recommendations",  # visrec, after the shop's apps
    "oscar_shop",  # this project: the hm import command
]
SITE_ID = 1

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
]
ROOT_URLCONF = "oscar_shop.urls"
WSGI_APPLICATION = "oscar_shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],  # the overrides of oscar's product and home pages
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ],
        },
    },
]

if not os.environ.get("DATABASE_URL"):
    raise ImproperlyConfigured(
        "DATABASE_URL is not set: the oscar example needs PostgreSQL with pgvector "
        "(`make oscar-demo` passes one for the embedded server)"
    )
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=600)}
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}"}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

AUTHENTICATION_BACKENDS = [
    "oscar.apps.customer.auth_backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# oscar lists its catalogue through haystack; Whoosh keeps the index in a folder, updated on every save.
HAYSTACK_CONNECTIONS = {
    "default": {"ENGINE": "haystack.backends.whoosh_backend.WhooshEngine", "PATH": str(DATA_DIR / "whoosh")}
}
HAYSTACK_SIGNAL_PROCESSOR = "haystack.signals.RealtimeSignalProcessor"
# One cache for every web and worker process (visrec keeps its list and rule versions there, so a
# rule or judgement saved by one process reaches the others): files here, Redis in production.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                      "LOCATION": str(DATA_DIR / "django-cache")}}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
WHITENOISE_USE_FINDERS = True  # static files straight from the apps (oscar's, visrec's): no collectstatic
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "media"
SERVE_MEDIA = True  # the demo serves product photos itself; use your web server in production

OSCAR_SHOP_NAME = "visrec × oscar"
OSCAR_SHOP_TAGLINE = "H&M photos, visual recommendations"
OSCAR_DEFAULT_CURRENCY = "EUR"
OSCAR_ALLOW_ANON_CHECKOUT = True

# -- visrec ---------------------------------------------------------------------------
VISREC_PRODUCT_MODEL = "catalogue.Product"
VISREC_PRODUCT_ADAPTER = "recommendations.integrations.oscar.OscarAdapter"
VISREC = {
    "CACHE_DIR": str(DATA_DIR / "cache"),
    "WEIGHTS_DIR": os.environ.get("VISREC_WEIGHTS_DIR", ""),
}
# visrec's API: token auth for servers, the session for the shop's pages; its error body and throttles.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "recommendations.api.authentication.ExpiringTokenAuthentication",  # VISREC["TOKEN_TTL_DAYS"]
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["recommendations.api.throttling.ShopperRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"recommendations": "300/min", "search": "30/min", "events": "600/min"},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "recommendations.api.errors.exception_handler",
}
# Celery: no broker → visrec's embedding and training tasks run in-process.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"recommendations": {"handlers": ["console"], "level": "INFO"}},
}
