"""The similar-items template tag and the shop pages that use it."""

import re

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from catalog.models import Interaction
from recommendations import serving

pytestmark = pytest.mark.django_db


def _render(product, limit=8) -> str:
    request = RequestFactory().get("/")
    return Template("{% load visrec %}{% similar_items product " + str(limit) + " %}").render(
        Context({"product": product, "request": request})
    )


def test_markup_carries_widget_and_product_ids(small_catalog):
    html = _render(small_catalog["anchor"], 4)
    assert 'data-visrec-widget="similar-items"' in html
    ids = [int(x) for x in re.findall(r'data-product-id="(\d+)"', html)]
    assert len(ids) == 4
    assert ids[0] == small_catalog["twin"].pk
    assert small_catalog["anchor"].pk not in ids
    assert 'loading="lazy"' in html


def test_backend_failure_renders_fallback_not_an_error(small_catalog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("vector index down")

    monkeypatch.setattr(serving, "similar_items_or_fallback", broken)
    Interaction.objects.create(product=small_catalog["cousin"], kind="purchase", session_key="s")
    html = _render(small_catalog["anchor"])
    ids = [int(x) for x in re.findall(r'data-product-id="(\d+)"', html)]
    assert ids[0] == small_catalog["cousin"].pk  # popular in the same category


def test_total_failure_renders_nothing(small_catalog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(serving, "similar_items_or_fallback", broken)
    monkeypatch.setattr(serving, "popular", broken)
    assert _render(small_catalog["anchor"]).strip() == ""


def test_product_page_shows_8_similar_items_and_records_a_view(client, small_catalog):
    anchor = small_catalog["anchor"]
    response = client.get(f"/product/{anchor.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    widget = html.split('data-visrec-widget="similar-items"', 1)[1]
    assert len(re.findall(r'data-product-id="\d+"', widget)) == 6
    assert Interaction.objects.filter(product=anchor, kind="view").count() == 1


def test_product_page_survives_broken_recommendations(client, small_catalog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("everything is down")

    monkeypatch.setattr(serving, "similar_items_or_fallback", broken)
    monkeypatch.setattr(serving, "popular", broken)
    response = client.get(f"/product/{small_catalog['anchor'].pk}/")
    assert response.status_code == 200
    assert small_catalog["anchor"].title in response.content.decode()


def test_home_and_category_pages_list_active_products(client, small_catalog):
    home = client.get("/").content.decode()
    assert small_catalog["anchor"].title in home
    assert f'data-product-id="{small_catalog["inactive"].pk}"' not in home
    category = small_catalog["anchor"].category
    page = client.get(f"/category/{category.slug}/").content.decode()
    assert small_catalog["twin"].title in page
    assert small_catalog["other0"].title not in page


def test_unknown_product_page_is_404(client, db):
    assert client.get("/product/424242/").status_code == 404
