"""Template tags for recommendation widgets; a failing backend renders a fallback."""

from __future__ import annotations

import logging

from django import template
from django.template.loader import render_to_string

from .. import serving

logger = logging.getLogger(__name__)
register = template.Library()


@register.simple_tag(takes_context=True)
def similar_items(context, product, limit: int = 8) -> str:
    """``{% similar_items product 8 %}``: products that look like ``product``.

    Never raises: if the vector search fails, popular products of the category are
    shown, and if that fails too, nothing.
    """
    try:
        items = serving.similar_items_or_fallback(product, int(limit))
    except Exception:  # a widget must never break the product page
        logger.exception("similar_items widget failed", extra={"product_id": getattr(product, "pk", None)})
        items = _safe_popular(product, limit)
    return render_to_string(
        "visrec/widgets/similar_items.html",
        {"items": items, "product": product, "widget": "similar-items"},
        request=context.get("request"),
    )


def _safe_popular(product, limit) -> list:
    try:
        return serving.popular(int(limit), category=getattr(product, "category", None), exclude=[product.pk])
    except Exception:
        logger.exception("similar_items fallback failed")
        return []
