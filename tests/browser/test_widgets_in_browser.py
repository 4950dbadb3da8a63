"""The widgets in a real browser: images load, a click is recorded and counted in CTR."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import ProductImage
from recommendations import tracking
from recommendations.models import Interaction

pytestmark = pytest.mark.django_db(transaction=True)

IMAGES_LOADED = """(selector) => {
  const images = [...document.querySelectorAll(selector)];
  return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


def _load_all_images(page, selector: str) -> int:
    """Scroll every lazy image into view, then wait until each has decoded pixels."""
    for image in page.locator(selector).all():
        image.scroll_into_view_if_needed()
    page.wait_for_function(IMAGES_LOADED, arg=selector)
    return page.locator(selector).count()


def test_product_page_widgets_show_images_and_count_a_click(page, small_catalog, settings):
    settings.VISREC = {**settings.VISREC, "TRACKING_MODE": "thread"}  # the production path
    anchor = small_catalog["anchor"]
    page.goto(f"{page.base_url}/product/{small_catalog['other1'].pk}/")  # viewed before
    page.goto(f"{page.base_url}/product/{anchor.pk}/")

    similar = '[data-visrec-widget="similar-items"] img'
    assert _load_all_images(page, similar) == 5  # the product viewed before is kept for "recently viewed"
    assert page.locator('[data-visrec-widget="recently-viewed"] [data-product-id]').count() == 1
    assert page.locator('[data-visrec-widget="for-you"]').count() == 0  # no product of the small catalogue is left

    first = page.locator('[data-visrec-widget="similar-items"] [data-product-id]').first
    target = int(first.get_attribute("data-product-id"))
    with page.expect_navigation():
        first.locator("a").click()
    assert page.url.endswith(f"/product/{target}/")
    assert page.locator(f'article[data-product-id="{target}"]').count() == 1

    tracking.flush()
    counted = tracking.ctr(widget="similar-items")
    assert counted["clicks"] == 1 and counted["impressions"] >= 1


def test_search_by_photo_in_the_browser(page, small_catalog, tmp_path):
    photo = ProductImage.objects.get(product=small_catalog["cousin"], is_primary=True)
    path = tmp_path / "upload.jpg"
    with photo.file.open("rb") as f:
        path.write_bytes(f.read())
    page.goto(f"{page.base_url}/")
    page.get_by_role("link", name="Search by photo").click()
    page.set_input_files("#photo", str(path))
    with page.expect_navigation():
        page.get_by_role("button", name="Find similar products").click()
    assert _load_all_images(page, '[data-visrec-widget="search-by-photo"] img') > 0
    first = page.locator('[data-visrec-widget="search-by-photo"] [data-product-id]').first
    assert int(first.get_attribute("data-product-id")) == small_catalog["cousin"].pk

    path.write_bytes(b"not a photo at all")
    page.set_input_files("#photo", str(path))
    with page.expect_navigation():
        page.get_by_role("button", name="Find similar products").click()
    assert "This file cannot be used" in page.get_by_role("alert").inner_text()


def test_complete_the_look_on_a_product_page(page, small_catalog, monkeypatch):
    from recommendations.conf import DEFAULTS, visrec_settings

    # (six products to show: similar items above would show them all, and a page that shares
    # its products would leave this widget none; tests/serving/test_page_dedupe.py covers that)
    monkeypatch.setitem(DEFAULTS, "PAGE_DEDUPE", False)
    visrec_settings.reset()
    # given a shopper who bought the striped shirt and a mug together
    anchor, mug = small_catalog["anchor"], small_catalog["other2"]
    for product, hours in ((anchor, 3), (mug, 2)):
        Interaction.objects.create(
            product=product, kind="purchase", session_key="buyer", created_at=timezone.now() - timedelta(hours=hours)
        )
    # when another shopper opens the shirt's page
    page.goto(f"{page.base_url}/product/{anchor.pk}/")
    widget = '[data-visrec-widget="complete-the-look"]'
    # then below the similar items, "Complete the look" shows that mug first and no shirt at all
    assert page.locator(f"{widget} h2").inner_text() == "Complete the look"
    assert page.locator('[data-visrec-widget="similar-items"] + [data-visrec-widget="complete-the-look"]').count() == 1
    assert _load_all_images(page, f"{widget} img") == 4  # the four mugs
    first = page.locator(f"{widget} [data-product-id]").first
    assert int(first.get_attribute("data-product-id")) == mug.pk
    assert first.get_attribute("data-reason") == "co-purchase"
    shirts = {p.pk for p in small_catalog.values() if p.category_id == anchor.category_id}
    shown = {
        int(x)
        for x in page.locator(f"{widget} [data-product-id]").evaluate_all(
            "(cards) => cards.map((c) => c.dataset.productId)"
        )
    }
    assert not shown & shirts
    # and a click on it is counted for this widget
    with page.expect_navigation():
        first.locator("a").click()
    assert page.url.endswith(f"/product/{mug.pk}/")
    tracking.flush()
    assert tracking.ctr(widget="complete-the-look")["clicks"] == 1
