"""The plugin's one shopper-facing view: following a recommended item's link."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from . import events, tracking
from .conf import get_product_model
from .models import ProductSnapshot
from .templatetags.visrec import shopper

logger = logging.getLogger(__name__)


def shopper_session_key(request: HttpRequest) -> str | None:
    """The session key, creating the session if needed (never fails the page or the redirect)."""
    if not request.session.session_key:
        try:
            request.session.save()
        except Exception:
            logger.warning("could not create a session", exc_info=True)
    return request.session.session_key


def recommendation_click(request: HttpRequest, token: str) -> HttpResponse:
    """``r/<token>/``: count the click on a recommended item and record a "click" event, then go to the product.

    The click counts (and its event is recorded) once per impression, from the shopper the
    list was shown to; anyone else following the link, or following it again, just reaches
    the product.
    """
    try:
        data = tracking.read_click_token(token)
    except tracking.InvalidClickToken as e:
        raise Http404(str(e)) from None
    session_key = shopper_session_key(request)
    user, _ = shopper(request)
    product = get_product_model()._default_manager.filter(pk=data["product_id"]).first()
    if product is None:
        raise Http404("the recommended product is gone")
    try:
        if _counts(token, data, user, session_key):
            events.record(product, "click", user=user, session_key=session_key or "", source=data["widget"][:64])
    except tracking.InvalidClickToken as e:
        logger.info("recommendation click not counted: %s", e, extra={"impression": data["impression_id"]})
    except Exception:
        logger.warning("could not record a recommendation click", exc_info=True)
    url = ProductSnapshot.objects.filter(pk=product.pk).values_list("url", flat=True).first()
    return redirect(url or product.get_absolute_url())


def _counts(token: str, data: dict, user, session_key: str | None) -> bool:
    """Whether this click counts: recorded once per impression (integer product keys), by its shopper."""
    if not isinstance(data["product_id"], int):  # Click rows keep integer product keys: the shopper check only
        if not tracking.shown_to(data, user=user, session_key=session_key):
            raise tracking.InvalidClickToken("click token was issued to another shopper")
        return True
    return tracking.record_click(token, user=user, session_key=session_key) is not None
