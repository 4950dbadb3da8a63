"""Template context shared by every shop page."""

from django.utils.functional import SimpleLazyObject


def categories(request) -> dict:
    """Top-level categories and the header's rendered links (lazy: evaluated only if used).

    Both come from the per-process copy in ``catalog.views`` (re-read every 30 s, the last
    good list while the database is down), so a page costs no category query.
    """
    from .views import nav_categories, nav_html

    return {"nav_categories": SimpleLazyObject(nav_categories), "nav_html": SimpleLazyObject(nav_html)}
