"""A real Celery worker of the ``embeddings`` pool draws the admin's match overlay; the web process polls for it.

Redis (``VISREC_TEST_REDIS_URL``) is the broker and, as in production, the cache both
processes share: the worker caches the PNG (or the reason it cannot be drawn) where this
process, serving the admin as a web process would, finds it. The worker listens on the
``embeddings`` queue only, so the overlay arrives only if the task is routed there.
"""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from catalog.demo.drawing import draw_product
from recommendations.cockpit import overlay
from recommendations.models import ImageState
from tests.cockpit.test_overlay import SPECS, url
from tests.recommendations.test_freshness import shared_cache  # noqa: F401
from tests.recommendations.test_worker import _wait_for, broker, start_worker, stop_worker  # noqa: F401

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def embeddings_worker(shared_cache, tmp_path):  # noqa: F811
    proc = start_worker(shared_cache, tmp_path / "worker.log", queues="embeddings", REDIS_URL=shared_cache)
    yield tmp_path / "worker.log"
    stop_worker(proc)
    print((tmp_path / "worker.log").read_text()[-5000:])


def _polled(client, address: str, timeout: float = 120.0):
    """The view's first answer that is not 202 ("drawing"), asking once a second as overlay.js does."""
    deadline = time.monotonic() + timeout
    response = client.get(address)
    while response.status_code == 202 and time.monotonic() < deadline:
        time.sleep(1.0)
        response = client.get(address)
    return response


def test_the_embeddings_worker_draws_the_overlay_the_admin_polls_for(
    embeddings_worker, client, staff_user, product_with_image
):
    # given demo photos the worker has embedded (uploads queue their embedding on commit)
    products = {name: product_with_image(image=draw_product(spec), title=name) for name, spec in SPECS.items()}
    assert _wait_for(lambda: not ImageState.objects.exclude(status="ready").exists(), 180), "catalogue not embedded"
    client.force_login(staff_user("catalog.view_product"))
    anchor, match, mug = products["anchor"], products["match"], products["other"]
    # when the owner asks where the anchor and its match agree
    first = client.get(url(anchor, match))
    # then the view queues the drawing and answers at once that it is drawing ...
    assert first.status_code == 202, first.content[:300]
    # ... and the worker's PNG is served once drawn
    response = _polled(client, url(anchor, match))
    assert response.status_code == 200 and response["Content-Type"] == "image/png", response.content[:300]
    assert Image.open(io.BytesIO(response.content)).size == (2 * overlay.HEIGHT + 12, overlay.HEIGHT)
    assert "recommendations.tasks.match_overlay" in embeddings_worker.read_text()
    # and the reason the worker finds for a corrupt photo is answered 422
    with open(mug.images.get().file.path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG any more")
    response = _polled(client, url(anchor, mug))
    assert response.status_code == 422
    assert response.content.decode().startswith("A photo cannot be used: corrupt or truncated image")
