"""``Server-Timing`` response header: how long the application took to answer.

Browsers' dev tools and load generators read it (``Server-Timing: app;dur=4.12``, in
milliseconds), so server time can be told apart from network and queueing time. It is
measured around everything below this middleware (put it first in ``MIDDLEWARE``); for a
streaming response it is the time to the first byte. ``SERVER_TIMING = False`` in the
settings turns it off.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed


class ServerTimingMiddleware:
    """Adds ``app;dur=<ms>`` to the ``Server-Timing`` header of every response."""

    def __init__(self, get_response) -> None:
        if not getattr(settings, "SERVER_TIMING", True):
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        entry = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        existing = response.get("Server-Timing")
        response["Server-Timing"] = f"{existing}, {entry}" if existing else entry
        return response
