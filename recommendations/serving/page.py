"""One page, no repeats: the widgets of a page share the products they show.

Each widget tag leaves out the products the tags above it showed (and those the page
registered itself, e.g. its own product) and then adds its own, so the order of the tags
decides which widget keeps a product; the serving functions rank as many more candidates
as they leave out, so every list stays full. The registry lives on the request
(``PAGE_DEDUPE`` switches it on for every page; a tag opts out with ``dedupe=False``, a
page with ``{% visrec_page dedupe=False %}``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..conf import visrec_settings


class ShownOnPage:
    """The products one page's widgets have shown so far, in order, and those kept for a widget further down.

    ``reserve``: products a later widget keeps whatever the order (the shopper's recently
    viewed products, ``{% visrec_page keep_recently_viewed=True %}``): the other widgets
    leave them out, the keeping one (``ids(keeping=True)``) does not.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._ids: dict = {}
        self._reserved: dict = {}

    def ids(self, keeping: bool = False) -> list:
        """The products a widget leaves out: those shown so far and (unless ``keeping``) the reserved ones."""
        if not self.enabled:
            return []
        return list(self._ids) if keeping else list({**self._ids, **self._reserved})

    def add(self, ids: Iterable) -> None:
        """Record products as shown (also while de-duplication is off, for a later part that turns it on)."""
        self._ids.update(dict.fromkeys(ids))

    def reserve(self, ids: Iterable) -> None:
        """Keep products for a widget further down the page (the others leave them out)."""
        self._reserved.update(dict.fromkeys(ids))

    def __contains__(self, pk) -> bool:
        return pk in self._ids


def shown_on_page(request) -> ShownOnPage | None:
    """The request's registry, made at its first use (on or off by ``PAGE_DEDUPE``); None without a request."""
    if request is None:
        return None
    page = getattr(request, "_visrec_shown", None)
    if page is None:
        page = ShownOnPage(enabled=bool(visrec_settings.PAGE_DEDUPE))
        try:
            request._visrec_shown = page
        except AttributeError:  # an object that takes no attributes: no page to share
            return None
    return page
