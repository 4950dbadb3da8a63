from django.apps import AppConfig


class RecommendationsConfig(AppConfig):
    """Visual recommendations: embeddings, recommenders, serving."""

    name = "recommendations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from . import checks, signals  # noqa: F401  (registers checks and signal handlers)

        try:
            signals.connect_shop()
        except ImproperlyConfigured:
            pass  # reported by the system checks visrec.E010 / E011
