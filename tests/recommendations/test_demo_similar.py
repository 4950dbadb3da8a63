"""On the demo catalogue, the product page's similar items look alike (type or colour)."""

import re

import pytest

from catalog.demo import builder
from catalog.models import Product
from recommendations import embedding
from recommendations.models import ImageState

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_catalog(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    builder.build_demo(builder.DemoParams(products=120, users=5, seed=11))
    report = embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    assert report.failed == 0 and report.embedded + report.reused == 120
    return Product.objects.recommendable()


def _alike(a: Product, b: Product) -> bool:
    return a.attributes["type"] == b.attributes["type"] or a.attributes["colour"] == b.attributes["colour"]


def test_product_page_shows_8_similar_items_of_the_same_type_or_colour(client, demo_catalog):
    by_id = {p.pk: p for p in Product.objects.all()}
    shares = []
    for product in list(demo_catalog.order_by("pk"))[:25]:
        html = client.get(f"/product/{product.pk}/").content.decode()
        widget = html.split('data-visrec-widget="similar-items"', 1)[1].split("</section>", 1)[0]
        ids = [int(x) for x in re.findall(r'data-product-id="(\d+)"', widget)]
        assert len(ids) == 8 and product.pk not in ids
        shares.append(sum(_alike(product, by_id[i]) for i in ids) / 8)
    # 6 types x 13 colours: a random pick shares type or colour ~24% of the time
    assert sum(shares) / len(shares) >= 0.8, shares
