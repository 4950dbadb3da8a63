"""Settings of the tiny UUID shop: the demo project's, with ``uuidshop`` in place of the bundled catalogue."""

from visrec_shop.settings import *  # noqa: F403
from visrec_shop.settings import INSTALLED_APPS, TEMPLATES

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "catalog"] + ["tests.uuidshop"]
TEMPLATES[0]["OPTIONS"]["context_processors"] = [
    p for p in TEMPLATES[0]["OPTIONS"]["context_processors"] if not p.startswith("catalog.")
]
ROOT_URLCONF = "tests.uuidshop.urls"
VISREC_PRODUCT_MODEL = "uuidshop.Item"
VISREC_PRODUCT_ADAPTER = "tests.uuidshop.adapter.ItemAdapter"
DATABASES["default"]["TEST"] = {"NAME": "test_visrec_uuidshop"}  # noqa: F405
