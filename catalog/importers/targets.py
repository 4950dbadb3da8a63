"""What an import can fill (targets), the shipped column presets, shared limits and the importer's errors."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

PRODUCT_TARGETS = ("sku", "title", "description", "category", "price", "currency", "stock", "is_active", "image")


INTERACTION_TARGETS = ("user", "sku", "kind", "value", "timestamp")


TARGETS = {"products": PRODUCT_TARGETS, "interactions": INTERACTION_TARGETS}


#: Column mappings shipped with visrec (``--preset NAME``).
PRESETS: dict[str, dict[str, Any]] = {
    # H&M Personalized Fashion Recommendations (the sample in ../shared/datasets/hm).
    "hm": {
        "products": {
            "sku": "item_id",
            "image": "image_path",
            "title": ["title", "{colour_group_name} {product_type_name}"],
            "category": ["category", "product_type_name"],
            "description": "detail_desc",
        },
        "interactions": {"user": "user_id", "sku": "item_id"},
        # The dataset has no stock levels (nor prices): new products get 100 in stock so
        # they are recommendable; price stays 0 (the purchases' price is normalised).
        "defaults": {"category": "Uncategorised", "stock": "100"},
    },
}


EXTERNAL_USER_PREFIX = "ext-"


_USERNAME_SAFE = re.compile(r"[\w.@+-]+")


_UNIX_SECONDS = re.compile(r"[+-]?\d+(\.\d*)?")


_TRUE = {"1", "true", "t", "yes", "y", "on"}


_FALSE = {"0", "false", "f", "no", "n", "off"}


_CENT = Decimal("0.01")


_MAX_PRICE = Decimal("9999999999.99")


class ImportConfigError(ValueError):
    """The files or the column mapping cannot be imported at all (nothing was written)."""


class RowError(ValueError):
    """One row cannot be imported; the message is the reason shown to the shop owner."""
