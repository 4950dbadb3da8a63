"""Model registry for the ml tests: every module of recommendations.ml that imports."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import recommendations.ml as ml_package
from recommendations.ml.base import REGISTRY

logger = logging.getLogger(__name__)


def import_all_models() -> dict[str, str]:
    """Import every ``recommendations.ml`` module (registering its models); return failures."""
    failures = {}
    for info in pkgutil.iter_modules(ml_package.__path__):
        try:
            importlib.import_module(f"{ml_package.__name__}.{info.name}")
        except Exception as e:  # a colleague's half-written module must not hide the others
            failures[info.name] = repr(e)
            logger.warning("cannot import recommendations.ml.%s: %r", info.name, e)
    return failures


IMPORT_FAILURES = import_all_models()
MODEL_NAMES = sorted(REGISTRY)
