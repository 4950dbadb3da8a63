"""POST /api/v1/search/by-image/: nearest products to a photo; bad files are clear 4xx."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.fixtures.images import HOSTILE_IMAGES, make_image

pytestmark = pytest.mark.django_db

URL = "/api/v1/search/by-image/"


def upload(client, data: bytes, name: str = "photo.jpg", **fields):
    return client.post(URL, {"image": SimpleUploadedFile(name, data), **fields}, format="multipart")


def test_photo_finds_the_products_that_look_like_it(api_client, small_catalog):
    photo = make_image(color=(200, 30, 30), shape="stripes", size=(224, 224))
    response = upload(api_client, photo, limit="3")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["widget"] == "search-by-photo" and body["impression"]
    ids = [item["id"] for item in body["results"]]
    assert len(ids) == 3
    assert {small_catalog["anchor"].pk, small_catalog["twin"].pk} <= set(ids)
    assert small_catalog["inactive"].pk not in ids and small_catalog["sold_out"].pk not in ids
    scores = [item["score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_category_filter_by_slug(api_client, small_catalog):
    mugs = small_catalog["other0"].category
    photo = make_image(color=(200, 30, 30), shape="stripes", size=(224, 224))
    response = upload(api_client, photo, category=mugs.slug, limit="10")
    assert response.status_code == 200
    assert {item["id"] for item in response.json()["results"]} == {small_catalog[f"other{i}"].pk for i in range(4)}
    unknown = upload(api_client, photo, category="no-such-category")
    assert unknown.status_code == 400 and unknown.json()["error"]["message"].startswith("category:")


@pytest.mark.parametrize("name", ["truncated_jpeg", "corrupt_png", "html_named_jpg", "plain_text", "svg"])
def test_corrupt_or_non_image_files_are_400_with_a_reason(api_client, name):
    data, reason = HOSTILE_IMAGES[name]
    response = upload(api_client, data())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_image" and reason in error["message"]


def test_decompression_bomb_is_refused_by_its_pixel_count(api_client):
    data, _ = HOSTILE_IMAGES["decompression_bomb_png"]
    response = upload(api_client, data(), name="bomb.png")
    assert response.status_code == 400
    assert "too large" in response.json()["error"]["message"]


def test_empty_or_missing_file_is_a_validation_error(api_client):
    missing = api_client.post(URL, {"limit": "3"}, format="multipart")
    assert missing.status_code == 400 and "image" in missing.json()["error"]["fields"]
    empty = upload(api_client, b"")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "validation_error"


def test_oversized_image_is_413(api_client, settings):
    settings.VISREC = {**settings.VISREC, "MAX_IMAGE_BYTES": 20_000}
    noise = Image.effect_noise((120, 120), 100).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    assert 20_000 < len(buf.getvalue()) < 20_000 + 64 * 1024
    response = upload(api_client, buf.getvalue(), name="noise.png")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_body_announced_too_large_is_refused_before_it_is_read(api_client):
    # The body is tiny but claims 1 GB: reading it would fail, refusing it from the header does not.
    response = api_client.generic(
        "POST", URL, b"--x--\r\n", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(10**9)
    )
    assert response.status_code == 413
    assert "1000000000 bytes" in response.json()["error"]["message"]


def test_json_body_is_unsupported_media_type(api_client):
    response = api_client.post(URL, {"image": "aGVsbG8="}, format="json")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
