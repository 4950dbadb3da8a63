"""A small embedded catalogue shared by serving, API and widget tests."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageEnhance

from recommendations import embedding
from recommendations.models import ImageState
from tests.fixtures.images import make_image


def _variant(data: bytes, brightness: float) -> bytes:
    im = ImageEnhance.Brightness(Image.open(io.BytesIO(data))).enhance(brightness)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def small_catalog(product_with_image, category_factory):
    """Embedded products: an anchor, its near twin, a cousin, and unrelated items.

    Returns a dict of named products. ``inactive`` and ``sold_out`` are twins of
    the anchor too, so a correct query must filter them out.
    """
    shirts, mugs = category_factory("Shirts"), category_factory("Mugs")
    anchor_img = make_image(color=(200, 30, 30), shape="stripes", size=(224, 224))
    products = {
        "anchor": product_with_image(image=anchor_img, category=shirts, title="Red stripes"),
        "twin": product_with_image(image=_variant(anchor_img, 1.0), category=shirts, title="Red stripes again"),
        "inactive": product_with_image(image=_variant(anchor_img, 0.95), category=shirts, is_active=False),
        "sold_out": product_with_image(image=_variant(anchor_img, 0.97), category=shirts, stock=0),
        "cousin": product_with_image(
            image=make_image(color=(200, 30, 30), shape="stripes", size=(224, 224), background=(225, 225, 235)),
            category=shirts,
        ),
    }
    for i, (color, shape) in enumerate(
        [((20, 160, 40), "circle"), ((30, 30, 200), "triangle"), ((240, 200, 0), "square"), ((90, 90, 90), "circle")]
    ):
        products[f"other{i}"] = product_with_image(
            image=make_image(color=color, shape=shape, size=(224, 224)), category=mugs
        )
    report = embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    assert report.failed == 0
    return products
