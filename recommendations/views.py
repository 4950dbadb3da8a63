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
    """``r/<token>/``: count the click on a recommended item and record a "click" event, then go to the product."""
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
        if isinstance(data["product_id"], int):  # click counts keep integer product keys
            tracking.record_click(token, user=user, session_key=session_key)
        events.record(product, "click", user=user, session_key=session_key or "", source=data["widget"][:64])
    except Exception:
        logger.warning("could not record a recommendation click", exc_info=True)
    url = ProductSnapshot.objects.filter(pk=product.pk).values_list("url", flat=True).first()
    return redirect(url or product.get_absolute_url())
