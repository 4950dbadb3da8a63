"""The owner opens a product's similar-items preview, asks where a match agrees, and sees the heat overlay.

A worker draws it: here a thread runs the queued task 1.5 s after it is queued, while the
page polls the view (202, "Drawing…") until the PNG is cached.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from catalog.demo.drawing import ImageSpec, draw_product
from recommendations import embedding, tasks
from recommendations.models import ImageState
from tests.browser.test_cockpit import log_in, owner, shots  # noqa: F401  (the shop owner, screenshots)

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_DELAY_S = 1.5


@pytest.fixture
def slow_worker(monkeypatch):
    """``tasks.match_overlay.delay`` runs the task in a thread, WORKER_DELAY_S after it is queued."""
    started: list[threading.Timer] = []

    def run(args) -> None:
        try:
            tasks.match_overlay.apply(args=args)
        finally:
            connection.close()  # this thread's own

    def delay(*args) -> None:
        started.append(threading.Timer(WORKER_DELAY_S, run, args=(args,)))
        started[-1].start()

    monkeypatch.setattr(tasks.match_overlay, "delay", delay)
    yield started
    for timer in started:
        timer.join(60)


SPECS = {
    "Red stripes tee": ImageSpec("t-shirt", "red", "stripes", "white"),
    "Blue tee": ImageSpec("t-shirt", "blue", "solid", "beige", dx=30),
    "Green mug": ImageSpec("mug", "green", "dots", "sky"),
}


def test_the_owner_sees_where_a_match_agrees(page, owner, product_with_image, shots, slow_worker):  # noqa: F811
    anchor, match, mug = (product_with_image(image=draw_product(spec), title=t) for t, spec in SPECS.items())
    assert embedding.embed_images(ImageState.objects.values_list("pk", flat=True)).failed == 0
    log_in(page)
    page.goto(f"{page.base_url}/admin/catalog/product/{anchor.pk}/change/")
    row = page.locator(f'#similar-items-preview tr[data-neighbour="{match.pk}"]')
    box = page.locator(f"#visrec-overlay-{match.pk}")
    assert box.is_hidden()
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/overlay/" in request.url else None)
    # when the owner clicks "Where they agree" on a neighbour's row
    row.get_by_role("link", name="Where they agree").click()
    # then the overlay opens under the row, says it is drawing while the worker draws ...
    page.wait_for_function(
        "box => box.querySelector('.visrec-overlay-status').textContent.startsWith('Drawing where the two photos')",
        arg=box.element_handle(),
    )
    assert box.locator("img").is_hidden()
    # ... and its image loads once drawn, found by polling
    image = box.locator("img")
    image.wait_for(state="visible")
    assert len(asked) >= 2 and len(slow_worker) == 1
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
