"""The product adapter contract: settings resolved lazily, misconfiguration a system-check error."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from catalog import services
from recommendations.adapters import CategoryRecord, ImageRecord, ProductRecord
from recommendations.checks import check_product_model
from recommendations.conf import get_adapter


def _ids(errors) -> list[str]:
    return [e.id for e in errors]


def test_the_demo_settings_pass_the_check():
    assert check_product_model() == []


@pytest.mark.parametrize(
    ("settings_", "error", "words"),
    [
        ({"VISREC_PRODUCT_MODEL": "nosuch.Product"}, "visrec.E010", "VISREC_PRODUCT_MODEL"),
        ({"VISREC_PRODUCT_MODEL": "catalog"}, "visrec.E010", "VISREC_PRODUCT_MODEL"),
        ({"VISREC_PRODUCT_ADAPTER": "nosuch.module.Adapter"}, "visrec.E011", "VISREC_PRODUCT_ADAPTER"),
        ({"VISREC_PRODUCT_ADAPTER": "decimal.Decimal"}, "visrec.E011", "VISREC_PRODUCT_ADAPTER"),
        ({"VISREC_PRODUCT_ADAPTER": ""}, "visrec.E011", "VISREC_PRODUCT_ADAPTER"),
    ],
)
def test_a_misconfigured_model_or_adapter_is_a_check_error_naming_the_setting(settings_, error, words):
    with override_settings(**settings_):
        errors = [e for e in run_checks() if e.id.startswith("visrec.E01")]
    get_adapter.cache_clear()
    assert _ids(errors) == [error]
    assert words in errors[0].msg


@pytest.mark.django_db
def test_the_catalog_adapter_describes_a_product(product_factory, category_factory, image_bytes):
    # given a product in a sub-category with two images, the second one primary
    parent = category_factory(name="Clothes")
    child = category_factory(name="Shirts", parent=parent)
    product = product_factory(title="Blue shirt", category=child, stock=0)
    services.add_product_image(product, image_bytes(), "a.jpg", is_primary=False)
    second = services.add_product_image(product, image_bytes(), "b.jpg", is_primary=True)
    adapter = get_adapter()

    # when it is described
    (record,) = list(adapter.prefetch(adapter.model.objects.filter(pk=product.pk)))
    record = adapter.describe(record)

    # then title, url, availability, the category path and the images come through
    assert isinstance(record, ProductRecord)
    assert (record.pk, record.title, record.url) == (product.pk, "Blue shirt", product.get_absolute_url())
    assert (record.active, record.in_stock) == (True, False)
    assert record.category == CategoryRecord(id=child.pk, name="Shirts", path=(parent.pk, child.pk))
    assert [i.key for i in record.images] == [str(i.pk) for i in product.images.order_by("position")]
    assert isinstance(record.primary_image, ImageRecord) and record.primary_image.key == str(second.pk)
    with adapter.open_image(record.primary_image) as f:
        assert f.read(4) == second.file.open("rb").read(4)
