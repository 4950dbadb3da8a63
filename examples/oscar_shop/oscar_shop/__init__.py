"""A minimal django-oscar shop with visrec installed from its package (settings and templates only)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
