"""The admin's "where they agree" overlay of a similar-items match: staff only, cached, a reason instead of a 500."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from types import SimpleNamespace

import pytest
from PIL import Image

from catalog.demo.drawing import ImageSpec, draw_product
from recommendations import embedding
from recommendations.cockpit import overlay
from recommendations.ml import heatmaps
from recommendations.models import EmbeddingModel, ImageState

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
    assert response.content.decode().startswith("The overlay cannot be drawn now (RuntimeError)")
    assert any(r.message == "match overlay failed" and r.exc_info for r in caplog.records)
