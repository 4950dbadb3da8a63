"""Shop code records shopper events through ``recommendations.events.record``; the adapter maps variants."""

from __future__ import annotations

import pytest
from django.test import override_settings

from catalog.adapter import CatalogAdapter
from catalog.models import Product
from recommendations import events
from recommendations.models import Interaction

pytestmark = pytest.mark.django_db


class VariantAdapter(CatalogAdapter):
    """Products whose SKU is ``<parent sku>/<size>`` are variants; events count for the parent."""

    def recommendable_pk(self, product):
        if "/" not in product.sku:
            return product.pk
        return Product.objects.filter(sku=product.sku.split("/")[0]).values_list("pk", flat=True).first()


def test_an_event_counts_for_the_recommendable_product(product_factory):
    parent = product_factory(sku="SHIRT")
    size_m = product_factory(sku="SHIRT/M")
    orphan = product_factory(sku="GONE/L")
    with override_settings(VISREC_PRODUCT_ADAPTER="tests.plugin.test_events.VariantAdapter"):
        stored = events.record(size_m, "add_to_cart", session_key="s-1", source="basket")
        ignored = events.record(orphan, "view", session_key="s-1")
    assert (stored.product_id, stored.kind, stored.source) == (parent.pk, "add_to_cart", "basket")
    assert ignored is None
    assert list(Interaction.objects.values_list("product_id", flat=True)) == [parent.pk]


def test_events_need_a_shopper_and_a_known_kind(product_factory):
    product = product_factory()
    assert events.record(product, "view") is None  # nobody: no user, no session
    with pytest.raises(ValueError, match="unknown event kind"):
        events.record(product, "like", session_key="s-1")
    rating = events.record(product, "rating", session_key="s-1", value=4.0)
    assert Interaction.objects.get(pk=rating.pk).value == 4.0
