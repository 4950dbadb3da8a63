"""The visrec demo shop: a Django project hosting the catalog and recommendations apps."""

from .celery import app as celery_app

__all__ = ("celery_app",)
