"""``reverse()`` for hot paths: one URL pattern with one argument, from a per-process template.

A product page links dozens of URLs (recommended products, click tokens, navigation);
Django's ``reverse`` costs tens of microseconds each (thread-local lookups, pattern
matching). The pattern's URL is reversed once with a marker value, split around the
marker and kept per URL conf and script prefix; later calls join strings. Values that
are not plain URL-safe text fall back to ``reverse``.
"""

from __future__ import annotations

import re
import threading

from django.conf import settings
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

_SAFE = re.compile(r"[-\w:]+", re.ASCII)
_MARKERS = ("visrecurlmarker", "918273645546372819")  # one a str/slug converter accepts, one an int converter does
_templates: dict[tuple, tuple[str, str] | None] = {}
_lock = threading.Lock()


def reverse_one(viewname: str, kwarg: str, value) -> str:
    """``reverse(viewname, kwargs={kwarg: value})``, cached as a template."""
    text = str(value)
    if not _SAFE.fullmatch(text):
        return reverse(viewname, kwargs={kwarg: value})
    key = (settings.ROOT_URLCONF, get_urlconf(), get_script_prefix(), viewname, kwarg)
    template = _templates.get(key, False)
    if template is False:
        template = _template(viewname, kwarg)
        with _lock:
            if len(_templates) > 256:
                _templates.clear()
            _templates[key] = template
    if template is None:
        return reverse(viewname, kwargs={kwarg: value})
    return template[0] + text + template[1]


def _template(viewname: str, kwarg: str) -> tuple[str, str] | None:
    for marker in _MARKERS:
        try:
            url = reverse(viewname, kwargs={kwarg: marker})
        except NoReverseMatch:
            continue
        if url.count(marker) == 1:
            before, after = url.split(marker)
            return before, after
    return None
