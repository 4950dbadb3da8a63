"""The admin's "where they agree" overlay of a similar-items match: staff only, drawn by a worker, cached, a reason
instead of a 500.

Without a broker (the suite's settings, the single-process demo) the task runs in-process and
the first request gets the PNG; ``queued`` stands in for a broker and its worker (the task
runs when the test says, with ``.apply``). ``test_overlay_worker.py`` runs a real worker.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from PIL import Image

from catalog.demo.drawing import ImageSpec, draw_product
from recommendations import embedding, tasks
from recommendations.cockpit import overlay
from recommendations.ml import heatmaps
from recommendations.models import EmbeddingModel, ImageState
from tests.recommendations.test_worker import _database_url

pytestmark = pytest.mark.django_db

SPECS = {
    "anchor": ImageSpec("t-shirt", "red", "stripes", "white"),
    "match": ImageSpec("t-shirt", "blue", "solid", "beige", dx=30),
    "other": ImageSpec("mug", "green", "dots", "sky"),
}


@pytest.fixture
def demo_pair(product_with_image):
    """Three embedded products with demo photos: two t-shirts and a mug."""
    products = {name: product_with_image(image=draw_product(spec), title=name) for name, spec in SPECS.items()}
    assert embedding.embed_images(ImageState.objects.values_list("pk", flat=True)).failed == 0
    return products


def url(product, neighbour) -> str:
    return f"/admin/recommendations/rule/product/{product.pk}/overlay/{neighbour.pk}/"


@pytest.fixture
def queued(monkeypatch):
    """A broker: ``tasks.match_overlay.delay`` queues its arguments here, for the test to run with ``.apply``."""
    sent: list[tuple] = []
    monkeypatch.setattr(tasks.match_overlay, "delay", lambda *args: sent.append(args))
    return sent


def drawing(response) -> bool:
    """The view's answer while a worker draws: 202, a short text, not to be cached, ask again in a second."""
    return (
        response.status_code == 202
        and response["Content-Type"].startswith("text/plain")
        and "no-store" in response["Cache-Control"]
        and response["Retry-After"] == "1"
    )


def test_staff_gets_a_png_of_both_photos_computed_once(demo_pair, client, staff_user, monkeypatch):
    client.force_login(staff_user("catalog.view_product"))
    drawn = []
    real = heatmaps.overlay_pair_png
    monkeypatch.setattr(heatmaps, "overlay_pair_png", lambda *a, **k: drawn.append(1) or real(*a, **k))
    # when the owner asks where the anchor and its match agree
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    # then a PNG of both photos comes back, each overlay.HEIGHT tall
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (2 * overlay.HEIGHT + 12, overlay.HEIGHT)
    assert "private" in response["Cache-Control"]
    # and asking again is served from the cache: the heat is not computed twice
    assert client.get(url(demo_pair["anchor"], demo_pair["match"])).content == response.content
    assert drawn == [1]
    # another pair (or order) is another overlay
    assert client.get(url(demo_pair["match"], demo_pair["anchor"])).content != response.content
    assert drawn == [1, 1]


def test_a_new_embedding_version_draws_again(demo_pair, client, staff_user, monkeypatch):
    client.force_login(staff_user("catalog.view_product"))
    first = overlay.match_overlay(demo_pair["anchor"], demo_pair["match"])
    drawn = []
    monkeypatch.setattr(overlay, "_draw", lambda model, a, b: drawn.append(model.key) or b"png")
    # a re-embed with another version (same backbone here) is another cache key
    model = EmbeddingModel.objects.active()
    monkeypatch.setattr(model, "key", "another-version")
    monkeypatch.setattr(overlay, "active", lambda: SimpleNamespace(embedding=model))
    assert overlay.match_overlay(demo_pair["anchor"], demo_pair["match"]) == b"png" != first
    assert drawn == ["another-version"]


def test_non_staff_and_staff_without_the_product_permission_are_refused(
    demo_pair, client, staff_user, django_user_model
):
    shopper = django_user_model.objects.create_user("shopper", password="pw")
    client.force_login(shopper)
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(staff_user("recommendations.view_rule", username="clerk"))
    assert client.get(url(demo_pair["anchor"], demo_pair["match"])).status_code == 403
    client.force_login(staff_user("catalog.view_product", username="owner2"))
    assert (
        client.get(f"/admin/recommendations/rule/product/{demo_pair['anchor'].pk}/overlay/999999/").status_code == 404
    )


def test_a_broken_photo_gives_a_reason_not_a_500(demo_pair, client, staff_user):
    client.force_login(staff_user("catalog.view_product"))
    image = demo_pair["match"].images.get()
    with open(image.file.path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG any more")
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 422 and response["Content-Type"].startswith("text/plain")
    assert "A photo cannot be used: corrupt or truncated image" in response.content.decode()
    # a product without a photo says so
    image.delete()
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 422 and response.content.decode().endswith(")” has no photo.")


def test_a_backbone_without_spatial_maps_gives_a_reason(demo_pair, client, staff_user, monkeypatch):
    import torch

    class Tokens(torch.nn.Module):  # pools inside its forward, as a vision transformer does
        def forward(self, x):
            return x.flatten(2).mean(2)

    real = embedding._embedder_for(EmbeddingModel.objects.active())
    vit = SimpleNamespace(backbone=dataclasses.replace(real.backbone, name="vit_b_16", model=Tokens()))
    monkeypatch.setattr(overlay, "_embedder_for", lambda model: vit)
    client.force_login(staff_user("catalog.view_product"))
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 422
    assert response.content.decode().startswith("No overlay for this embedding version: vit_b_16 has no spatial")


def test_the_preview_links_each_neighbour_to_its_overlay(demo_pair, client, staff_user):
    client.force_login(staff_user("catalog.change_product", "catalog.view_product"))
    anchor = demo_pair["anchor"]
    html = client.get(f"/admin/catalog/product/{anchor.pk}/change/").content.decode()
    for neighbour in (demo_pair["match"], demo_pair["other"]):
        assert f'href="{url(anchor, neighbour)}"' in html
    assert "visrec/admin/overlay.js" in html
    # and so does visrec's own preview page of a product (for shops whose admin is not Django's)
    html = client.get(f"/admin/recommendations/rule/product/{anchor.pk}/").content.decode()
    assert f'href="{url(anchor, demo_pair["match"])}"' in html


def test_the_admin_and_the_overlay_modules_do_not_import_torch():
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import recommendations.cockpit.merch, recommendations.cockpit.overlay, recommendations.ml.heatmaps\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))\n"
    )
    env = {**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout


def test_an_unexpected_failure_is_logged_and_answered_with_a_reason(demo_pair, client, staff_user, monkeypatch, caplog):
    def broken(model, anchor, match):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(overlay, "_draw", broken)
    client.force_login(staff_user("catalog.view_product"))
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 503
    assert response.content.decode() == "The overlay cannot be drawn now (RuntimeError); the log has the details."
    assert any(r.message == "match overlay failed" and r.exc_info for r in caplog.records)


def test_with_a_worker_the_view_answers_drawing_until_the_png_is_cached(demo_pair, client, staff_user, queued):
    client.force_login(staff_user("catalog.view_product"))
    anchor, match = demo_pair["anchor"], demo_pair["match"]
    # when the owner asks for a pair not drawn yet
    first = client.get(url(anchor, match))
    # then the drawing is queued (primary keys only) and the view says it is drawing
    assert drawing(first) and first.content.decode() == "Drawing where the two photos agree…"
    assert queued == [(anchor.pk, match.pk)]
    # and asking again while it is pending queues nothing more
    assert drawing(client.get(url(anchor, match)))
    assert queued == [(anchor.pk, match.pk)]
    # when the worker has run the task
    assert tasks.match_overlay.apply(args=queued[0]).get() == "ready"
    # then the next ask gets the PNG, and the pair is no longer pending
    response = client.get(url(anchor, match))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (2 * overlay.HEIGHT + 12, overlay.HEIGHT)
    assert cache.get(overlay._pending_key(anchor.pk, match.pk)) is None
    assert len(queued) == 1


def test_the_reason_the_worker_found_is_answered_422_and_not_queued_again(demo_pair, client, staff_user, queued):
    client.force_login(staff_user("catalog.view_product"))
    anchor, mug = demo_pair["anchor"], demo_pair["other"]
    with open(mug.images.get().file.path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG any more")
    # the web process only reads and hashes the files: the worker is the one to find it corrupt
    assert drawing(client.get(url(anchor, mug)))
    assert tasks.match_overlay.apply(args=queued[0]).get().startswith("not drawn: A photo cannot be used")
    response = client.get(url(anchor, mug))
    assert response.status_code == 422 and "no-store" in response["Cache-Control"]
    assert response.content.decode().startswith("A photo cannot be used: corrupt or truncated image")
    assert len(queued) == 1
    # a product without a photo is answered by the web process at once, nothing queued
    mug.images.get().delete()
    response = client.get(url(mug, anchor))
    assert response.status_code == 422 and response.content.decode().endswith(")” has no photo.")
    assert len(queued) == 1


def test_a_broker_that_does_not_answer_is_a_503_and_the_next_ask_queues_again(
    demo_pair, client, staff_user, monkeypatch
):
    client.force_login(staff_user("catalog.view_product"))

    def refused(*args):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(tasks.match_overlay, "delay", refused)
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 503
    assert response.content.decode().startswith("The overlay cannot be queued now (the task broker did not take it)")
    sent = []
    monkeypatch.setattr(tasks.match_overlay, "delay", lambda *args: sent.append(args))
    assert drawing(client.get(url(demo_pair["anchor"], demo_pair["match"]))) and len(sent) == 1


def test_a_cache_that_does_not_answer_is_a_503_not_a_drawing_nobody_could_fetch(
    demo_pair, client, staff_user, monkeypatch, queued
):
    client.force_login(staff_user("catalog.view_product"))
    monkeypatch.setattr(overlay, "_cache_add", lambda *args: None)  # the cache helpers' answer while Redis is down
    response = client.get(url(demo_pair["anchor"], demo_pair["match"]))
    assert response.status_code == 503 and response.content.decode().startswith("The cache is not answering")
    assert queued == []


def test_a_transient_failure_is_left_to_the_tasks_retry_and_the_pair_stays_pending(demo_pair, monkeypatch, queued):
    anchor, match = demo_pair["anchor"], demo_pair["match"]
    assert overlay.requested_overlay(anchor, match) is None

    def database_away(model, a, b):
        raise DatabaseError("the server closed the connection")

    monkeypatch.setattr(overlay, "_draw", database_away)
    pending = overlay._pending_key(anchor.pk, match.pk)
    with pytest.raises(DatabaseError):
        overlay.draw_overlay(anchor.pk, match.pk, transient=(DatabaseError,))
    assert cache.get(pending) is not None
    assert overlay.requested_overlay(anchor, match) is None and len(queued) == 1  # still pending: not queued again
    # on the last try the failure becomes the owner's answer (for a minute), and the pair is released
    outcome = overlay.draw_overlay(anchor.pk, match.pk)
    assert outcome == "not drawn: The overlay cannot be drawn now (DatabaseError); the log has the details."
    assert cache.get(pending) is None
    with pytest.raises(overlay.OverlayFailed, match="DatabaseError"):
        overlay.requested_overlay(anchor, match)
    assert len(queued) == 1


def test_a_pair_whose_product_was_deleted_meanwhile_is_released(demo_pair, queued):
    anchor, match = demo_pair["anchor"], demo_pair["match"]
    assert overlay.requested_overlay(anchor, match) is None
    match_pk = match.pk
    match.delete()
    assert tasks.match_overlay.apply(args=queued[0]).get() == "gone"
    assert cache.get(overlay._pending_key(anchor.pk, match_pk)) is None


_SERVE = """
import json, sys
import django
django.setup()
from celery.signals import before_task_publish
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment
from recommendations.cockpit import overlay
from catalog.models import Product

setup_test_environment()
sent = []
before_task_publish.connect(
    lambda headers=None, routing_key=None, **kw: sent.append([headers["task"], routing_key]), weak=False
)
anchor, match = (Product.objects.get(pk=pk) for pk in {pks})
client = Client()
client.force_login(get_user_model().objects.get(pk={user}))
url = "/admin/recommendations/rule/product/%s/overlay/%s/"
asked = [client.get(url % (anchor.pk, match.pk)) for _ in range(2)]  # queued, then pending
statuses = [r.status_code for r in asked]
overlay._cache_set(overlay._pair(match, anchor).key, b"PNG as a worker caches it", 60)
cached = client.get(url % (match.pk, anchor.pk))
statuses.append(cached.status_code)
print(json.dumps({{
    "statuses": statuses,
    "body": cached.content.decode(),
    "sent": sent,
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnxruntime")),
    "peak_kb": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")),
}}))
"""


@pytest.mark.django_db(transaction=True)
def test_serving_the_view_with_a_broker_never_loads_torch(demo_pair, staff_user):
    # given a web process with a broker (the memory transport: tasks are sent, not run)
    user = staff_user("catalog.view_product")
    code = _SERVE.format(pks=[demo_pair["anchor"].pk, demo_pair["match"].pk], user=user.pk)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": "memory://",
        "CELERY_RESULT_BACKEND": "cache+memory://",
    }
    # when it serves a pair not drawn yet (twice) and a pair a worker has cached
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    served = json.loads(run.stdout.strip().splitlines()[-1])
    # then the first is queued once, to the embeddings pool, the cached one is served, and torch never loads
    assert served["statuses"] == [202, 202, 200], run.stderr[-3000:]
    assert served["body"] == "PNG as a worker caches it"
    assert served["sent"] == [["recommendations.tasks.match_overlay", "embeddings"]]
    assert served["heavy"] == []
    assert served["peak_kb"] < 600 * 1024  # issue 15's target for a web process (drawn here: about 1.1 GB)
    print(f"web process serving the overlay view: peak RSS {served['peak_kb'] / 1024:.0f} MB")
