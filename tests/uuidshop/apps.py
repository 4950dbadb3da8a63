from django.apps import AppConfig


class UuidShopConfig(AppConfig):
    """A tiny shop of its own: UUID product keys, its own picture model, no visrec columns."""

    name = "tests.uuidshop"
    label = "uuidshop"
    default_auto_field = "django.db.models.BigAutoField"
