from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class RecommendationsConfig(AppConfig):
    """Visual recommendations: embeddings, recommenders, serving."""

    name = "recommendations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (registers checks and signal handlers)
        from .conf import get_adapter

        try:
            adapter = get_adapter()
        except ImproperlyConfigured:
            return  # the system check (visrec.E011) names the setting
        adapter.connect()
