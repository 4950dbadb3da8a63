"""Template context shared by every shop page."""

from .models import Category


def categories(request) -> dict:
    """Top-level categories for the navigation bar (lazy: evaluated only if used)."""
    return {"nav_categories": Category.objects.filter(parent__isnull=True)}
