"""Fixtures of the serving tests: the small embedded catalogue and a synthetic vector catalogue."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pgvector import HalfVector

from catalog.models import Category, Product
from recommendations.models import EmbeddingModel, ImageEmbedding, ImageState
from recommendations.sync import sync_products
from tests.recommendations.conftest import small_catalog  # noqa: F401  (re-exported fixture)


def widget_ids(html: str, widget: str) -> list[int]:
    """Product ids inside the ``widget`` container of a page (empty if it is absent)."""
    if f'data-visrec-widget="{widget}"' not in html:
        return []
    part = html.split(f'data-visrec-widget="{widget}"', 1)[1].split("</section>", 1)[0]
    return [int(x) for x in re.findall(r'data-product-id="(\d+)"', part)]


@pytest.fixture
def vector_catalog(db):
    """``build(n, in_stock_share, dims)``: products with random unit vectors under an active
    embedding version with its HNSW index, most of them out of stock; returns (products, model)."""

    def build(n: int = 600, in_stock_share: float = 0.1, dims: int = 16, seed: int = 3, vectors=None):
        """``vectors``: the ``(n, dims)`` unit vectors (default: random); product ``i`` is in category ``i % 4``."""
        rng = np.random.default_rng(seed)
        cats = [Category.objects.create(name=f"C{i}", slug=f"vc-{seed}-{i}") for i in range(4)]
        products = Product.objects.bulk_create(
            [
                Product(
                    sku=f"V{seed}-{i:05d}",
                    title=f"Vector product {i}",
                    category=cats[i % 4],
                    stock=5 if rng.random() < in_stock_share else 0,
                )
                for i in range(n)
            ]
        )
        sync_products([p.pk for p in products])  # visrec's snapshots (bulk writes send no signals)
        images = ImageState.objects.bulk_create(  # embedded images without files (vectors are made up)
            [ImageState(product=p, key=f"v{p.pk}", is_primary=True, status=ImageState.Status.READY) for p in products]
        )
        model = EmbeddingModel.objects.create(
            key=f"synthetic-{seed}", backbone="synthetic", weights_sha256="0", dimensions=dims, is_active=True
        )
        model.ensure_index()
        if vectors is None:
            vectors = rng.normal(size=(n, dims)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ImageEmbedding.objects.bulk_create(
            [ImageEmbedding(image=im, model=model, vector=HalfVector(v)) for im, v in zip(images, vectors, strict=True)]
        )
        return products, model

    return build
