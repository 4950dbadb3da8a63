"""visrec in a shop of its own: UUID product keys, its own picture model, no visrec columns.

Run by ``tests/plugin/test_uuid_shop.py`` in a separate process with
``tests.uuidshop.settings`` (the product model is fixed per process) and its own database.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import connection

from recommendations import embedding, events, serving
from recommendations.models import ImageEmbedding, ImageState, Interaction, ProductSnapshot
from tests.fixtures.images import make_image

from .models import Item, Picture, Shelf

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path, monkeypatch):
    from recommendations.conf import DEFAULTS, visrec_settings

    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setitem(DEFAULTS, "TRACKING_MODE", "inline")
    monkeypatch.setitem(DEFAULTS, "CACHE_PREFIX", f"visrec-uuid-{uuid.uuid4().hex}:")
    visrec_settings.reset()
    yield
    visrec_settings.reset()


def _item(name: str, shelf: Shelf, picture: bytes, **fields) -> Item:
    item = Item.objects.create(name=name, shelf=shelf, price=10, **fields)
    Picture.objects.create(item=item, image=ContentFile(picture, name=f"{name}.png"))
    return item


@pytest.fixture
def shop():
    clothes = Shelf.objects.create(name="Clothes")
    shirts = Shelf.objects.create(name="Shirts", parent=clothes)
    mugs = Shelf.objects.create(name="Mugs")
    stripes = make_image(color=(200, 30, 30), shape="stripes", size=(224, 224))
    items = {
        "anchor": _item("Red stripes", shirts, stripes),
        "twin": _item("Red stripes again", shirts, make_image(color=(205, 35, 30), shape="stripes", size=(224, 224))),
        "gone": _item(
            "Sold out stripes",
            shirts,
            make_image(color=(198, 28, 32), shape="stripes", size=(224, 224)),
            available=False,
        ),
        "broken": _item("Broken photo", mugs, b"<html>not a picture</html>"),
    }
    for n, (color, shape) in enumerate(
        [((20, 160, 40), "circle"), ((30, 30, 200), "triangle"), ((240, 200, 0), "square")]
    ):
        items[f"mug{n}"] = _item(f"Mug {n}", mugs, make_image(color=color, shape=shape, size=(224, 224)))
    return items, {"clothes": clothes, "shirts": shirts, "mugs": mugs}


def test_the_shop_tables_carry_no_visrec_column():
    columns = {f.column for model in (Item, Picture) for f in model._meta.concrete_fields}
    assert not columns & {"sha256", "status", "error", "width", "height"}
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    assert not [t for t in tables if t.startswith("catalog_")]


def test_embed_similar_for_you_events_and_deletion(shop):
    items, shelves = shop
    # given the shop's saves reached visrec through the adapter
    snapshot = ProductSnapshot.objects.get(pk=items["anchor"].pk)
    assert isinstance(snapshot.pk, uuid.UUID) and snapshot.title == "Red stripes"
    assert snapshot.category_path == [shelves["clothes"].pk, shelves["shirts"].pk]
    assert ImageState.objects.filter(status="pending").count() == len(items)

    # when the images are embedded
    report = embedding.embed_images(ImageState.objects.values_list("pk", flat=True))

    # then every picture has a vector except the broken one, which failed with a reason
    assert (report.embedded, report.failed) == (len(items) - 1, 1)
    broken = ImageState.objects.get(product=items["broken"])
    assert broken.status == "failed" and "not an image" in broken.error

    # similar items: the twin first, the sold-out copy never, cards with the shop's URLs
    similar = serving.similar_items(items["anchor"], 3)
    assert similar.items[0].product.pk == items["twin"].pk
    assert items["gone"].pk not in similar.product_ids
    assert similar.items[0].product.get_absolute_url() == f"/items/{items['twin'].pk}/"

    # events: recorded on the shop's product; "for you" follows the session's taste
    stored = events.record(items["anchor"], "view", session_key="s-1")
    assert Interaction.objects.get(pk=stored.pk).product_id == items["anchor"].pk
    for_you = serving.for_you(session_key="s-1", limit=3)
    assert items["twin"].pk in for_you.product_ids
    assert serving.history(session_key="s-1").product_ids == [items["anchor"].pk]

    # deleting a product or a picture in the shop leaves no visrec rows behind
    twin = items["twin"]
    twin.delete()
    assert not ProductSnapshot.objects.filter(pk=twin.pk).exists()
    assert not ImageState.objects.filter(product_id=twin.pk).exists()
    Picture.objects.filter(item=items["mug0"]).delete()
    assert not ImageState.objects.filter(product=items["mug0"]).exists()
    assert not ImageEmbedding.objects.filter(image__product=items["mug0"]).exists()
    assert items["twin"].pk not in serving.similar_items(items["anchor"], 3, cached=False).product_ids


def test_admin_rule_preview_and_health_on_uuid_products(shop, client):
    items, _ = shop
    embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-12345678")
    client.force_login(boss)
    form = {
        "kind": "block",
        "product": str(items["twin"].pk),
        "widget": "similar-items",
        "multiplier": "1",
        "position": "0",
        "is_active": "on",
        "preview_product": str(items["anchor"].pk),
    }

    page = client.post("/admin/recommendations/rule/preview/", form)

    html = page.content.decode()
    assert page.status_code == 200, html[:2000]
    assert "Red stripes again" in html and str(items["twin"].pk) in html
    assert client.get("/admin/recommendations/rule/health/").status_code == 200

    # the product preview: what shoppers see, with the owner's "not similar" applied at once
    anchor, twin = items["anchor"], items["twin"]
    preview = client.get(f"/admin/recommendations/rule/product/{anchor.pk}/").content.decode()
    assert f'data-neighbour="{twin.pk}"' in preview and "Not similar" in preview
    judged = client.post(
        f"/admin/recommendations/rule/product/{anchor.pk}/judge/", {"neighbour": str(twin.pk), "verdict": "not_similar"}
    )
    assert judged.status_code == 302
    assert twin.pk not in serving.similar_items(anchor, 3, cached=False).product_ids


def test_the_widget_renders_uuid_products_with_their_urls_and_click_tokens(shop):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore
    from django.template import Context, Template
    from django.test import RequestFactory

    from recommendations import tracking
    from recommendations.models import Impression

    items, _ = shop
    embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    request = RequestFactory().get(items["anchor"].get_absolute_url())
    request.user, request.session = AnonymousUser(), SessionStore()
    request.session.create()

    html = Template("{% load visrec %}{% similar_items product %}").render(
        Context({"request": request, "product": items["anchor"]})
    )

    twin = items["twin"]
    assert f'data-product-id="{twin.pk}"' in html and "Red stripes again" in html
    impression = Impression.objects.get(widget="similar-items")
    assert impression.items[0]["product"] == str(twin.pk)
    token = tracking.click_token(impression.pk, twin.pk, 0, widget="similar-items")
    assert tracking.read_click_token(token)["product_id"] == str(twin.pk)
