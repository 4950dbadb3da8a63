""" "Why this?" and one page without repeats, in a real browser on the demo shop's pages."""

from __future__ import annotations

import pytest

from recommendations import embedding
from recommendations.models import ImageState
from tests.browser.test_widgets_in_browser import IMAGES_LOADED, _load_all_images
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db(transaction=True)

COLOURS = [(200, 30, 30), (30, 30, 200), (20, 160, 40), (240, 200, 0), (90, 90, 90), (160, 60, 200)]
SHAPES = ["circle", "square", "stripes", "triangle", "circle"]
WIDGETS = ("similar-items", "complete-the-look", "for-you", "recently-viewed")


@pytest.fixture
def shop(product_with_image, category_factory):
    """30 embedded products in three categories: enough for a product page's 8 + 12 + recently viewed."""
    categories = [category_factory(name) for name in ("Shirts", "Mugs", "Bags")]
    products = [
        product_with_image(
            image=make_image(color=COLOURS[i % 6], shape=SHAPES[i % 5], size=(224, 224)),
            category=categories[i % 3],
            title=f"Item {i}",
        )
        for i in range(30)
    ]
    report = embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    assert report.failed == 0
    return products


def _ids(page, widget: str) -> list[int]:
    cards = page.locator(f'[data-visrec-widget="{widget}"] .product-card')
    return [int(pk) for pk in cards.evaluate_all("(cards) => cards.map((c) => c.dataset.productId)")]


def test_for_you_says_because_you_viewed_with_the_viewed_products_photo(page, shop):
    viewed = shop[7]
    page.goto(f"{page.base_url}/product/{viewed.pk}/")
    thumbnail = page.locator("article.product-detail img").get_attribute("src")
    page.goto(f"{page.base_url}/")
    reasons = page.locator('[data-visrec-widget="for-you"] .product-card .visrec-why')
    assert reasons.count() == 12  # every item says why
    for n in range(reasons.count()):
        reason = reasons.nth(n)
        assert reason.inner_text().strip() == "Because you viewed"
        assert int(reason.get_attribute("data-because")) == viewed.pk
        assert reason.locator("img").get_attribute("src") == thumbnail
        assert reason.locator("img").get_attribute("alt") == viewed.title
    assert _load_all_images(page, '[data-visrec-widget="for-you"] .visrec-why img') == 12  # the thumbnails load
    box = reasons.first.locator("img").bounding_box()
    assert box["width"] <= 48 and box["height"] <= 48  # a thumbnail, not a second product photo


def test_a_cold_visitor_sees_trending_now(page, shop):
    from recommendations.models import Interaction

    Interaction.objects.create(product=shop[3], kind="purchase", session_key="someone-else")
    page.goto(f"{page.base_url}/")
    first = page.locator('[data-visrec-widget="for-you"] .product-card').first
    assert int(first.get_attribute("data-product-id")) == shop[3].pk
    assert first.locator(".visrec-why").inner_text().strip() == "Trending now"
    assert first.locator(".visrec-why img").count() == 0


def test_a_product_page_shows_every_product_once(page, shop):
    before = [shop[1], shop[6]]  # a red square and a red circle's neighbours: similar items would show them
    for product in before:
        page.goto(f"{page.base_url}/product/{product.pk}/")
    anchor = shop[0]
    page.goto(f"{page.base_url}/product/{anchor.pk}/")
    page.wait_for_function(IMAGES_LOADED, arg='[data-visrec-widget="similar-items"] img')
    shown = {widget: _ids(page, widget) for widget in WIDGETS}
    every = [pk for ids in shown.values() for pk in ids]
    assert len(every) == len(set(every)), shown  # no product twice
    assert anchor.pk not in every  # nor the product itself
    assert shown["recently-viewed"] == [p.pk for p in reversed(before)]  # the shopper's products stay there
    assert len(shown["similar-items"]) == 8 and shown["complete-the-look"]  # and the other lists are full:
    left = len(shop) - 1 - sum(len(shown[w]) for w in WIDGETS if w != "for-you")  # (a 30-product catalogue)
    assert len(shown["for-you"]) == min(12, left) > 0
    # the similar items say what they share with the product
    shares = page.locator('[data-visrec-widget="similar-items"] .visrec-why').all_inner_texts()
    assert "Same category" in shares
