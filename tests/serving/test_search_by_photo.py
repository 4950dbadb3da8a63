"""Search by photo: the service (validation, nearest products, category filter) and the page."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import ProductImage
from recommendations import embedding, serving
from recommendations.conf import visrec_settings
from recommendations.ml import onnx
from recommendations.ml.embedder import ExportedEmbedder
from recommendations.ml.images import load_image
from recommendations.models import EmbeddingModel
from tests.fixtures.images import make_image

from .conftest import widget_ids

pytestmark = pytest.mark.django_db


def _photo_of(product) -> bytes:
    image = ProductImage.objects.get(product=product, is_primary=True)
    with image.file.open("rb") as f:
        return f.read()


def test_nearest_products_to_an_uploaded_photo(small_catalog):
    rec = serving.search_by_image(_photo_of(small_catalog["anchor"]), limit=3)
    assert rec.widget == "search-by-photo" and rec.source == "visual"
    assert rec.product_ids[0] in {small_catalog["anchor"].pk, small_catalog["twin"].pk}
    assert small_catalog["sold_out"].pk not in rec.product_ids
    upload = SimpleUploadedFile("p.jpg", _photo_of(small_catalog["anchor"]), content_type="image/jpeg")
    mugs = small_catalog["other0"].category
    in_mugs = serving.search_by_image(upload, limit=3, category=mugs)
    assert len(in_mugs) == 3 and {r.product.category_id for r in in_mugs} == {mugs.pk}


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not an image"),
        (b"\xff\xd8\xff\xe0 truncated", "corrupt"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(small_catalog, data, message):
    with pytest.raises(serving.InvalidImage, match=message):
        serving.search_by_image(data)


def test_size_and_pixel_limits_come_from_settings(small_catalog, settings):
    settings.VISREC = {**settings.VISREC, "MAX_IMAGE_PIXELS": 100 * 100}
    with pytest.raises(serving.InvalidImage, match="too large"):
        serving.search_by_image(make_image(size=(200, 200)))
    settings.VISREC = {**settings.VISREC, "MAX_IMAGE_BYTES": 100}
    with pytest.raises(serving.InvalidImage, match="too large"):
        serving.search_by_image(make_image(size=(64, 64)))


def test_search_page_shows_results_and_errors(client, small_catalog):
    page = client.get("/search/photo/")
    assert page.status_code == 200 and b"data-drop-zone" in page.content
    photo = SimpleUploadedFile("me.jpg", _photo_of(small_catalog["cousin"]), content_type="image/jpeg")
    found = client.post("/search/photo/", {"photo": photo, "category": ""})
    assert found.status_code == 200
    assert widget_ids(found.content.decode(), "search-by-photo")[0] == small_catalog["cousin"].pk
    bad = SimpleUploadedFile("me.jpg", b"this is not a photo", content_type="image/jpeg")
    rejected = client.post("/search/photo/", {"photo": bad})
    assert rejected.status_code == 400
    assert "This file cannot be used" in rejected.content.decode()
    assert client.post("/search/photo/", {}).status_code == 400
    assert client.post("/search/photo/", {"photo": _png(), "category": "999999"}).status_code == 400


def _png() -> SimpleUploadedFile:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, format="PNG")
    return SimpleUploadedFile("g.png", buf.getvalue(), content_type="image/png")


def test_a_shoppers_photo_is_embedded_from_the_versions_onnx_export_without_torch(small_catalog):
    # given the active version, whose ONNX export the catalogue's embedding wrote
    model = EmbeddingModel.objects.active()
    query, full = embedding.query_embedder(model), embedding._embedder_for(model)
    assert isinstance(query, ExportedEmbedder)
    # then a photo gets the vector the full embedder gives
    photo = load_image(_photo_of(small_catalog["cousin"]))
    ours = query.embed_arrays([query.prepare(photo)])
    np.testing.assert_allclose(ours, full.embed_arrays([full.prepare(photo)]), atol=1e-5)
    # and a process that embeds that way never imports torch (about 650 MB in a web process)
    path = onnx.export_path(Path(visrec_settings.CACHE_DIR), model.backbone, model.key)
    code = (
        "import json, sys\n"
        "from PIL import Image\n"
        "from recommendations.ml.embedder import ExportedEmbedder\n"
        f"e = ExportedEmbedder({str(path)!r}, json.loads({json.dumps(model.preprocessing)!r}))\n"
        "e.embed_arrays([e.prepare(Image.new('RGB', (300, 200)))])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'django')))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert run.stdout.strip() == "[]", run.stderr
