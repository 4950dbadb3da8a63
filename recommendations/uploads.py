"""Uploads from shoppers and strangers: throttled and size-checked before the body is read.

Django reads a POST body, spooling a file over ``FILE_UPLOAD_MAX_MEMORY_SIZE`` to a
temporary file, as soon as anything touches ``request.POST``, and the CSRF middleware does
so for every non-exempt view before the view runs. So the checks live where nothing has
read the body yet:

- :func:`guard_upload` wraps a page that takes a shopper's upload (search by photo): the
  caller's throttle (the API's throttle class and scope, so both paths share one budget)
  and a body limit from ``Content-Length``, then Django's CSRF check, then the view.
- :class:`RequestBodyLimitMiddleware` refuses, on every other page, a body from anyone but
  staff that Django would spool to disk. Staff pages (admin image uploads, the bulk
  import) keep their own limits.
- The API's views are exempt from both: its parsers refuse an oversized body from its
  ``Content-Length`` and its throttles run before anything is parsed.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from math import ceil
from types import SimpleNamespace

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .conf import visrec_settings

logger = logging.getLogger(__name__)

#: Room for the multipart boundaries and the small form fields around one image.
MULTIPART_OVERHEAD = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

Refusal = Callable[[HttpRequest, int, str], HttpResponse]

NO_SPACE_MESSAGE = "The shop cannot store uploads right now (its disk is full); try again later."


class InMemoryUpload(MemoryFileUploadHandler):
    """Keeps a shopper's photo in memory, never in a temporary file, whatever its size.

    Only for bodies already size-checked (:func:`guard_upload`, the API's image parser): a
    search by photo then needs no disk, so a full one does not stop it.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.activated = True


def keep_in_memory(request: HttpRequest) -> None:
    """Read ``request``'s (size-checked) upload into memory (:class:`InMemoryUpload`)."""
    request.upload_handlers = [InMemoryUpload(request)]


def out_of_space(error: BaseException) -> bool:
    """Whether ``error`` is a full disk or quota (spooling an upload can hit one)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def content_length(request: HttpRequest) -> int | None:
    """The announced body size; None when the header is not a number (0 when absent)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    return length if length >= 0 else None


def image_body_limit() -> int:
    """The largest body one image upload may have (``MAX_IMAGE_BYTES`` and the form around it)."""
    return int(visrec_settings.MAX_IMAGE_BYTES) + MULTIPART_OVERHEAD


def throttle_wait(request: HttpRequest, scope: str) -> float | None:
    """Seconds before ``request``'s caller may post in throttle ``scope`` again; None when it may now.

    The API's throttle (per signed-in user or per client address) with the API's rates, so a
    page and the endpoint doing the same work share one budget. A cache that fails lets the
    upload through (logged): the throttle is a defence, not a dependency of the page.
    """
    from .api.throttling import ShopperRateThrottle

    throttle = ShopperRateThrottle()
    try:
        if throttle.allow_request(request, SimpleNamespace(throttle_scope=scope)):
            return None
    except ImproperlyConfigured:
        raise
    except Exception:
        logger.warning("upload throttle unavailable (cache error); letting the upload through", exc_info=True)
        return None
    return throttle.wait() or 1.0


def _plain(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def guard_upload(scope: str = "search", *, max_bytes: Callable[[], int] = image_body_limit, refused: Refusal = _plain):
    """Decorate a view taking an upload: throttle and size check before its body is read, then CSRF.

    A POST over the throttle ``scope`` gets 429 with ``Retry-After``; a body over
    ``max_bytes()`` (or with an unreadable ``Content-Length``) gets 413 / 400. ``refused``
    renders those answers (default: plain text). The view is exempt from the CSRF middleware,
    which would read the body first, and checks CSRF itself after these checks.
    """

    def decorate(view):
        protected = csrf_protect(view)

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in SAFE_METHODS:
                wait = throttle_wait(request, scope)
                if wait is not None:
                    seconds = max(1, ceil(wait))
                    message = f"Too many uploads from you; try again in {seconds} seconds."
                    response = refused(request, 429, message)
                    response["Retry-After"] = str(seconds)
                    return response
                length, limit = content_length(request), max_bytes()
                if length is None:
                    return refused(request, 400, "The request's Content-Length is not a number.")
                if length > limit:
                    return refused(request, 413, f"The upload is {length:,} bytes; at most {limit:,} are accepted.")
                keep_in_memory(request)
                try:
                    request.FILES  # noqa: B018 -- read the body now: a full disk is a refusal, not a 500
                except OSError as e:
                    if not out_of_space(e):
                        raise
                    logger.warning("upload refused: %s", e)
                    return refused(request, 503, NO_SPACE_MESSAGE)
            return protected(request, *args, **kwargs)

        return csrf_exempt(guarded)

    return decorate


class RequestBodyLimitMiddleware:
    """Refuse a body Django would spool to disk (over ``FILE_UPLOAD_MAX_MEMORY_SIZE``) unless staff send it.

    List it before ``CsrfViewMiddleware``, whose check reads the body (every middleware's
    request phase, ``AuthenticationMiddleware``'s included, has run by the time views are
    checked). Views exempt from CSRF are left alone: the API and :func:`guard_upload` pages
    check their own limits, and the CSRF middleware reads nothing for them.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if request.method in SAFE_METHODS or getattr(view_func, "csrf_exempt", False):
            return None
        length, limit = content_length(request), int(settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        if length is not None and length <= limit:
            return None
        if _is_staff(request):
            return None
        if length is None:
            return _plain(request, 400, "The request's Content-Length is not a number.")
        return _plain(request, 413, f"The request body is {length:,} bytes; at most {limit:,} are accepted here.")


def _is_staff(request: HttpRequest) -> bool:
    try:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_active and user.is_staff)
    except Exception:  # the session or user cannot be read (database down): not known to be staff
        return False
