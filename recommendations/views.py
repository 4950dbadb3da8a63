"""The plugin's one shop-facing page: the click redirect behind every widget link."""

from __future__ import annotations

import logging

from django.http import Http404
from django.shortcuts import redirect

from . import events, tracking
from .conf import get_product_model
from .models import ProductSnapshot
from .templatetags.visrec import shopper

logger = logging.getLogger(__name__)


def _session_key(request) -> str:
    """The visitor's session key, creating the session if needed (never fails the redirect)."""
    if not request.session.session_key:
        try:
            request.session.save()
        except Exception:
            logger.warning("could not create a session", exc_info=True)
    return request.session.session_key or ""


def recommendation_click(request, token: str):
    """``r/<token>/``: count the click on a recommended item, then go to the product's page (the adapter's URL)."""
    try:
        data = tracking.read_click_token(token)
    except tracking.InvalidClickToken as e:
        raise Http404(str(e)) from None
    url = ProductSnapshot.objects.filter(product_id=data["product_id"]).values_list("url", flat=True).first()
    if not url:
        raise Http404("this product is not in the shop any more")
    session_key = _session_key(request)
    user, _ = shopper(request)
    try:
        tracking.record_click(token, user=user, session_key=session_key)
        product = get_product_model()(pk=data["product_id"])
        events.record(product, "click", user=user, session_key=session_key, source=data["widget"][:64])
    except Exception:
        logger.warning("could not record a recommendation click", exc_info=True)
    return redirect(url)
