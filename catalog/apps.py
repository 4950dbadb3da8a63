from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """The shop's catalogue: categories, products, images, stock and interactions."""

    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"
