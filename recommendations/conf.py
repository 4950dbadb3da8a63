"""visrec settings: one ``VISREC`` dict with documented defaults, read lazily.

Read values as ``visrec_settings.BACKBONE``; tests may change ``settings.VISREC`` and
the cache is reset on ``setting_changed``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Backbone that embeds product images: "efficientnet_lite0" (packaged, offline) or
    # any torchvision classification model name ("resnet50", "convnext_tiny", ...).
    "BACKBONE": "efficientnet_lite0",
    # Explicit weight files per backbone name; otherwise the torch cache is searched.
    "WEIGHTS": {},
    # An extra folder searched for torchvision weight files (file name as in the URL).
    "WEIGHTS_DIR": "",
    # "auto" (cuda when available), "cpu" or "cuda".
    "DEVICE": "auto",
    # "auto": ONNX Runtime on the CPU (exported once into CACHE_DIR), torch on a GPU;
    # or force "torch" / "onnx".
    "RUNTIME": "auto",
    # Folder for derived artifacts such as exported ONNX models.
    "CACHE_DIR": "",
    "EMBED_BATCH_SIZE": 32,
    # Images per Celery task when a large backlog is queued.
    "EMBED_TASK_CHUNK": 256,
    # Images above this many pixels are rejected before decoding (decompression bombs).
    "MAX_IMAGE_PIXELS": 50_000_000,
    # Largest accepted image file.
    "MAX_IMAGE_BYTES": 25 * 1024 * 1024,
    # Queue an embedding when an image is saved.
    "AUTO_EMBED": True,
    # Widgets and API.
    "SIMILAR_DEFAULT_LIMIT": 8,
    "MAX_LIMIT": 100,
    # pgvector HNSW search breadth (higher: better recall, slower).
    "HNSW_EF_SEARCH": 100,
    # Training: strength of each interaction kind (a rating counts its value).
    "INTERACTION_WEIGHTS": {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0},
    # Recommenders fitted by visrec_train / the nightly task (names in ml.base.REGISTRY).
    "TRAIN_MODELS": ["popularity", "recent_popularity", "item_knn", "als", "image_cf"],
    # The metric a new version must beat the active one on (evaluation key).
    "TRAIN_METRIC": "recall@50",
    # Temporal hold-out: the last fraction of interactions (by time) evaluates.
    "TRAIN_HOLDOUT_FRACTION": 0.1,
}


class VisrecSettings:
    """Lazy view of ``settings.VISREC`` over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown visrec setting {name!r}")
        if name not in self._cache:
            user = getattr(settings, "VISREC", {}) or {}
            self._cache[name] = user.get(name, DEFAULTS[name])
        return self._cache[name]

    def reset(self) -> None:
        self._cache.clear()


visrec_settings = VisrecSettings()


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "VISREC":
        visrec_settings.reset()


setting_changed.connect(_reset, dispatch_uid="visrec_conf_reset")


def _get_model(setting_name: str, default: str):
    label = getattr(settings, setting_name, default)
    try:
        return apps.get_model(label, require_ready=False)
    except ValueError as e:
        raise ImproperlyConfigured(f"{setting_name} must be of the form 'app_label.model_name'") from e
    except LookupError as e:
        raise ImproperlyConfigured(f"{setting_name} refers to model '{label}' that has not been installed") from e


def get_product_model():
    """The shop's product model (``VISREC_PRODUCT_MODEL``, default ``catalog.Product``)."""
    return _get_model("VISREC_PRODUCT_MODEL", "catalog.Product")


def get_image_model():
    """The shop's product image model (``VISREC_IMAGE_MODEL``, default ``catalog.ProductImage``).

    It must have ``product``, ``file``, ``sha256``, ``is_primary``, ``status``, ``error``,
    ``width`` and ``height`` fields, like ``catalog.ProductImage``.
    """
    return _get_model("VISREC_IMAGE_MODEL", "catalog.ProductImage")
