"""OscarAdapter on oscar's own models: which products, images, categories, availability, price."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from oscar.core.loading import get_class, get_model
from oscar.test.factories import create_product
from PIL import Image

from recommendations.adapters import describe_all
from recommendations.integrations.oscar import OscarAdapter

Product = get_model("catalogue", "Product")
ProductImage = get_model("catalogue", "ProductImage")
ProductCategory = get_model("catalogue", "ProductCategory")
StockRecord = get_model("partner", "StockRecord")
create_from_breadcrumbs = get_class("catalogue.categories", "create_from_breadcrumbs")

pytestmark = pytest.mark.django_db


def jpeg(name: str, colour=(200, 30, 30)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, "JPEG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/jpeg")


@pytest.fixture
def adapter() -> OscarAdapter:
    return OscarAdapter(Product)


@pytest.fixture
def shop(settings, tmp_path):
    """A standalone product in stock, a parent with two colours (one sold out), a product with no stock record."""
    settings.MEDIA_ROOT = tmp_path
    standalone = create_product(upc="S1", title="Striped shirt", price=Decimal("19.99"), num_in_stock=4)
    parent = create_product(upc="P1", title="Denim jacket", structure="parent")
    blue = create_product(upc="P1-blue", title="", parent=parent, price=Decimal("49.00"), num_in_stock=2)
    black = create_product(upc="P1-black", title="Denim jacket black", parent=parent, price=Decimal("45.00"),
                           num_in_stock=0)
    no_stock = create_product(upc="N1", title="Unpriced scarf")
    return {"standalone": standalone, "parent": parent, "blue": blue, "black": black, "no_stock": no_stock}


def test_parents_and_standalone_products_are_recommended_never_a_child(adapter, shop):
    recommendable = set(adapter.recommendable_queryset().values_list("pk", flat=True))

    assert recommendable == {shop["standalone"].pk, shop["parent"].pk, shop["no_stock"].pk}
    assert adapter.recommendable_pk(shop["blue"]) == shop["parent"].pk
    assert adapter.recommendable_pk(shop["standalone"]) == shop["standalone"].pk


def test_availability_and_price_come_from_oscars_strategy(adapter, shop):
    records = {r.pk: r for r in describe_all(adapter, Product.objects.values_list("pk", flat=True))}

    standalone = records[shop["standalone"].pk]
    assert standalone.in_stock and standalone.active and standalone.price == Decimal("19.99")
    assert standalone.currency == "EUR"  # the stock record's currency (OSCAR_DEFAULT_CURRENCY)
    assert records[shop["parent"].pk].in_stock  # one colour is available
    assert not records[shop["black"].pk].in_stock
    assert not records[shop["no_stock"].pk].in_stock and records[shop["no_stock"].pk].price is None
    assert not records[shop["blue"].pk].recommendable and records[shop["parent"].pk].recommendable
    assert records[shop["blue"].pk].title == "Denim jacket"  # a child without a title shows its parent's


def test_a_parent_sold_out_in_every_colour_or_hidden_is_not_available(adapter, shop):
    StockRecord.objects.filter(product=shop["blue"]).update(num_in_stock=0)
    parent = Product.objects.get(pk=shop["parent"].pk)
    assert not adapter.describe(parent).in_stock

    Product.objects.filter(pk=parent.pk).update(is_public=False)
    assert not adapter.is_active(Product.objects.get(pk=parent.pk))
    assert not adapter.is_active(Product.objects.get(pk=shop["blue"].pk))  # a hidden parent hides its colours


def test_images_in_display_order_the_first_is_primary_and_a_replaced_file_is_a_new_version(adapter, shop):
    product = shop["standalone"]
    back = ProductImage.objects.create(product=product, original=jpeg("back.jpg"), display_order=1)
    front = ProductImage.objects.create(product=product, original=jpeg("front.jpg"), display_order=0)

    images = adapter.images(Product.objects.get(pk=product.pk))
    assert [i.key for i in images] == [str(front.pk), str(back.pk)]
    assert images[0].is_primary and not images[1].is_primary
    with adapter.open_image(images[0]) as f:
        assert Image.open(f).size == (64, 64)

    front.original = jpeg("front-v2.jpg", colour=(0, 0, 255))
    front.save()
    again = adapter.images(Product.objects.get(pk=product.pk))[0]
    assert again.key == images[0].key and again.version != images[0].version


def test_a_parent_without_images_of_its_own_shows_its_first_childs(adapter, shop):
    image = ProductImage.objects.create(product=shop["blue"], original=jpeg("blue.jpg"), display_order=0)

    assert [i.key for i in adapter.images(shop["parent"])] == [str(image.pk)]
    ProductImage.objects.create(product=shop["parent"], original=jpeg("parent.jpg"), display_order=0)
    assert [i.key for i in adapter.images(Product.objects.get(pk=shop["parent"].pk))] != [str(image.pk)]


def test_category_with_its_ancestors_from_oscars_tree_and_a_childs_is_its_parents(adapter, shop):
    bikini = create_from_breadcrumbs("Ladieswear > Swimwear > Bikini top")
    ProductCategory.objects.create(product=shop["parent"], category=bikini)
    ladies = bikini.get_ancestors()[0]

    record = adapter.category(Product.objects.get(pk=shop["blue"].pk))
    assert record.name == "Bikini top" and record.id == bikini.pk
    assert record.path[0] == ladies.pk and record.path[-1] == bikini.pk and len(record.path) == 3
    assert adapter.category(shop["standalone"]) is None
    by_name = {c.name: c for c in adapter.categories()}
    assert by_name["Bikini top"].path == record.path and by_name["Ladieswear"].path == (ladies.pk,)


def test_watched_models_name_the_products_they_change(adapter, shop):
    watched = adapter.watched()
    image = ProductImage.objects.create(product=shop["blue"], original=jpeg("b.jpg"), display_order=0)
    stock = StockRecord.objects.get(product=shop["blue"])
    category = create_from_breadcrumbs("Men > Shirts")
    ProductCategory.objects.create(product=shop["standalone"], category=category)

    assert set(watched[Product](shop["blue"])) == {shop["blue"].pk, shop["parent"].pk}
    assert set(watched[ProductImage](image)) == {shop["blue"].pk, shop["parent"].pk}
    assert set(watched[StockRecord](stock)) == {shop["blue"].pk, shop["parent"].pk}
    assert list(watched[type(category)](category)) == [shop["standalone"].pk]
