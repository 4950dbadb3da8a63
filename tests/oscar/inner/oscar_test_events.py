"""oscar's own signals become visrec events; oscar's image and product changes reach visrec's tables."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import reverse
from oscar.core.loading import get_class, get_model
from oscar.test.factories import create_basket, create_order, create_product
from PIL import Image

from recommendations.models import ImageEmbedding, ImageState, Interaction, ProductSnapshot

Product = get_model("catalogue", "Product")
ProductImage = get_model("catalogue", "ProductImage")
post_checkout = get_class("checkout.signals", "post_checkout")

pytestmark = pytest.mark.django_db(transaction=True)


def jpeg(name: str, colour) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), colour).save(buffer, "JPEG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/jpeg")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def jacket():
    """A parent with two colours in stock."""
    parent = create_product(upc="J", title="Denim jacket", structure="parent")
    blue = create_product(upc="J-blue", title="Denim jacket blue", parent=parent, price=Decimal("49"), num_in_stock=5)
    black = create_product(upc="J-black", title="Denim jacket black", parent=parent, price=Decimal("45"),
                           num_in_stock=5)
    return parent, blue, black


def test_viewing_a_variant_page_records_a_view_of_its_parent_for_the_session(client, jacket):
    parent, blue, _ = jacket

    page = client.get(blue.get_absolute_url())

    assert page.status_code == 200
    view = Interaction.objects.get(kind="view")
    assert view.product_id == parent.pk and view.session_key == client.session.session_key and view.user is None


def test_adding_to_oscars_basket_records_an_add_to_cart_for_the_signed_in_customer(client, jacket):
    parent, _, black = jacket
    customer = get_user_model().objects.create_user("ann", "ann@example.com", "pw-ann-1234")
    client.force_login(customer)

    client.post(reverse("basket:add", kwargs={"pk": black.pk}), {"quantity": 2})

    added = Interaction.objects.get(kind="add_to_cart")
    assert added.product_id == parent.pk and added.user == customer


def test_an_order_placed_records_a_purchase_per_line_with_its_quantity(jacket):
    parent, blue, _ = jacket
    customer = get_user_model().objects.create_user("bob", "bob@example.com", "pw-bob-1234")
    shirt = create_product(upc="S", title="Shirt", price=Decimal("10"), num_in_stock=9)
    basket = create_basket(empty=True)
    basket.add_product(blue, 2)
    basket.add_product(shirt, 1)

    create_order(basket=basket, user=customer)

    bought = {(i.product_id, i.value) for i in Interaction.objects.filter(kind="purchase", user=customer)}
    assert bought == {(parent.pk, 2.0), (shirt.pk, 1.0)}


def test_a_guests_order_is_recorded_for_the_guests_session(jacket):
    parent, blue, _ = jacket
    basket = create_basket(empty=True)
    basket.add_product(blue, 1)
    order = create_order(basket=basket)  # no user: order_placed records nothing
    assert not Interaction.objects.filter(kind="purchase").exists()
    request = RequestFactory().get("/checkout/thank-you/")
    from django.contrib.sessions.backends.db import SessionStore

    request.session = SessionStore()

    post_checkout.send(sender=None, order=order, user=AnonymousUser(), request=request, response=None)

    purchase = Interaction.objects.get(kind="purchase")
    assert purchase.product_id == parent.pk and purchase.session_key == request.session.session_key


def test_an_image_added_or_replaced_is_embedded_and_deleting_leaves_no_visrec_rows(jacket, client):
    parent, blue, _ = jacket
    shirt = create_product(upc="S2", title="Shirt", price=Decimal("10"), num_in_stock=9)

    # when a photo is added to a product (oscar's dashboard saves a ProductImage)
    image = ProductImage.objects.create(product=shirt, original=jpeg("shirt.jpg", (200, 20, 20)), display_order=0)

    # then it has a vector at once (tasks run in-process without a broker)
    state = ImageState.objects.get(product_id=shirt.pk, key=str(image.pk))
    assert state.status == ImageState.Status.READY
    red = ImageEmbedding.objects.get(image=state).vector

    # when the photo's file is replaced, it is embedded again
    image.original = jpeg("shirt-v2.jpg", (20, 20, 200))
    image.save()
    replaced = ImageState.objects.get(product_id=shirt.pk, key=str(image.pk))
    assert replaced.status == ImageState.Status.READY and replaced.sha256 != state.sha256
    assert ImageEmbedding.objects.get(image=replaced).vector != red

    # when a photo of a parent's and the products are deleted, visrec keeps nothing of them
    ProductImage.objects.create(product=parent, original=jpeg("jacket.jpg", (10, 90, 10)), display_order=0)
    client.get(blue.get_absolute_url())
    assert ImageState.objects.filter(product_id=parent.pk).exists() and Interaction.objects.exists()
    image.delete()
    assert not ImageState.objects.filter(product_id=shirt.pk).exists()
    ids = [shirt.pk, parent.pk, blue.pk]
    shirt.delete()
    parent.delete()  # and its children
    assert not ProductSnapshot.objects.filter(product_id__in=ids).exists()
    assert not ImageState.objects.filter(product_id__in=ids).exists()
    assert not Interaction.objects.filter(product_id__in=ids).exists()
    assert not ImageEmbedding.objects.exists()
