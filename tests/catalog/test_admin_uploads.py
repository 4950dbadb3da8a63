"""Photos uploaded in the admin are real raster images, stored under the suffix of their real format."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import ProductImage
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.cookie)"><rect width="9" height="9"/></svg>'
HTML = b"<!doctype html><script>fetch('/admin/')</script>"


@pytest.fixture
def owner_client(client):
    client.force_login(get_user_model().objects.create_superuser("owner", "owner@example.com", "pw-12345678"))
    return client


def _add(client, product, name: str, data: bytes):
    upload = SimpleUploadedFile(name, data, content_type="image/jpeg")
    form = {"product": product.pk, "file": upload, "position": 0, "import_error": ""}
    return client.post("/admin/catalog/productimage/add/", form)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("logo.svg", SVG, "markup such as SVG/HTML is not accepted"),
        ("photo.jpg", SVG, "markup such as SVG/HTML is not accepted"),
        ("photo.jpg", HTML, "markup such as SVG/HTML is not accepted"),
        ("photo.jpg", b"\x00\x01 plain bytes", "not a supported image"),
        ("photo.jpg", make_image(size=(300, 300))[:400], "corrupt or truncated"),
        ("photo.tif", make_image(fmt="TIFF"), "TIFF images are not accepted; upload a JPEG, PNG, WebP or GIF"),
    ],
)
def test_an_upload_that_is_not_an_allowed_raster_image_is_a_form_error(
    owner_client, product_factory, name, data, reason
):
    response = _add(owner_client, product_factory(), name, data)
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors["file"]
    assert errors[0].startswith("Not a usable image: ") and reason in errors[0]
    assert not ProductImage.objects.exists()


def test_a_real_image_is_stored_under_the_suffix_of_its_format(owner_client, product_factory):
    response = _add(owner_client, product_factory(), "disguised.html", make_image(fmt="PNG"))
    assert response.status_code == 302
    image = ProductImage.objects.get()
    assert image.file.name.endswith(".png") and image.sha256


def test_the_product_page_inline_validates_uploads_too(owner_client, product_factory):
    product = product_factory()
    form = {
        "sku": product.sku, "title": product.title, "description": "", "price": "9.90", "currency": "EUR",
        "stock": 3, "is_active": "on", "attributes": "{}",
        "images-TOTAL_FORMS": 1, "images-INITIAL_FORMS": 0, "images-MIN_NUM_FORMS": 0, "images-MAX_NUM_FORMS": 1000,
        "images-0-file": SimpleUploadedFile("x.svg", SVG), "images-0-position": 0,
    }  # fmt: skip
    response = owner_client.post(f"/admin/catalog/product/{product.pk}/change/", form)
    assert response.status_code == 200
    [formset] = response.context["inline_admin_formsets"]
    assert "markup such as SVG/HTML" in formset.formset.errors[0]["file"][0]
    assert not ProductImage.objects.exists()
