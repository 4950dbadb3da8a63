"""The owner opens a product's similar-items preview, asks where a match agrees, and sees the heat overlay."""

from __future__ import annotations

import pytest

from catalog.demo.drawing import ImageSpec, draw_product
from recommendations import embedding
from recommendations.models import ImageState
from tests.browser.test_cockpit import log_in, owner, shots  # noqa: F401  (the shop owner, screenshots)

pytestmark = pytest.mark.django_db(transaction=True)

SPECS = {
    "Red stripes tee": ImageSpec("t-shirt", "red", "stripes", "white"),
    "Blue tee": ImageSpec("t-shirt", "blue", "solid", "beige", dx=30),
    "Green mug": ImageSpec("mug", "green", "dots", "sky"),
}


def test_the_owner_sees_where_a_match_agrees(page, owner, product_with_image, shots):  # noqa: F811
    anchor, match, mug = (product_with_image(image=draw_product(spec), title=t) for t, spec in SPECS.items())
    assert embedding.embed_images(ImageState.objects.values_list("pk", flat=True)).failed == 0
    log_in(page)
    page.goto(f"{page.base_url}/admin/catalog/product/{anchor.pk}/change/")
    row = page.locator(f'#similar-items-preview tr[data-neighbour="{match.pk}"]')
    box = page.locator(f"#visrec-overlay-{match.pk}")
    assert box.is_hidden()
    # when the owner clicks "Where they agree" on a neighbour's row
    row.get_by_role("link", name="Where they agree").click()
    # then the overlay opens under the row and its image loads
    image = box.locator("img")
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => img.naturalWidth") > 0
    assert "Hot (red)" in box.inner_text()
    box.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "match-overlay.png"))
    # and a neighbour whose photo is broken gives the reason in place of the picture
    with open(mug.images.get().file.path, "wb") as f:
        f.write(b"not a photo")
    page.locator(f'#similar-items-preview tr[data-neighbour="{mug.pk}"]').get_by_role(
        "link", name="Where they agree"
    ).click()
    reason = page.locator(f"#visrec-overlay-{mug.pk} .errornote")
    reason.wait_for(state="visible")
    assert "cannot be used" in reason.inner_text()
