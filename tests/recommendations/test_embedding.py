"""Embedding images with the real packaged CNN, stored in pgvector."""

import numpy as np
import pytest
from django.db import connection

from recommendations import embedding
from recommendations.models import EmbeddingModel, ImageEmbedding, ImageState

pytestmark = pytest.mark.django_db

# The default backbone: EfficientNet-Lite0's 1280 pooled features.
DEFAULT = "efficientnet_lite0"
DEFAULT_DIMENSIONS = 1280


def _vector(product) -> np.ndarray:
    emb = ImageEmbedding.objects.get(image__product=product)
    return np.asarray(emb.vector, dtype=np.float32)


def _embed_all():
    return embedding.embed_images(ImageState.objects.values_list("pk", flat=True))


def test_vectors_have_the_default_descriptors_dimensions_and_unit_norm(product_with_image):
    product = product_with_image()
    report = _embed_all()
    assert report.embedded == 1
    vec = _vector(product)
    assert vec.shape == (DEFAULT_DIMENSIONS,)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-2)  # halfvec precision
    image = product.visrec_images.get()
    assert image.status == "ready" and image.width == 120 and image.height == 120


def test_identical_images_give_identical_vectors_and_are_embedded_once(product_with_image, image_bytes):
    data = image_bytes(color=(20, 120, 200), shape="square")
    a = product_with_image(image=data)
    b = product_with_image(image=data)
    report = _embed_all()
    assert report.embedded == 1 and report.reused == 1
    assert np.array_equal(_vector(a), _vector(b))


@pytest.mark.parametrize("kind,other", [("t-shirt", "mug"), ("sneaker", "bag"), ("mug", "poster")])
def test_recoloured_copy_is_nearer_than_another_product_type(product_with_image, kind, other):
    from catalog.demo.drawing import ImageSpec, draw_product

    red = product_with_image(image=draw_product(ImageSpec(kind, "red", "stripes", "white")))
    blue = product_with_image(image=draw_product(ImageSpec(kind, "blue", "stripes", "white")))
    red_other = product_with_image(image=draw_product(ImageSpec(other, "red", "stripes", "white")))
    _embed_all()
    anchor = _vector(red)
    assert anchor @ _vector(blue) > anchor @ _vector(red_other)


def test_bad_image_is_marked_failed_and_batch_goes_on(product_with_image, image_bytes):
    good = product_with_image()
    bad = product_with_image(image=b"<html>not an image</html>", filename="evil.jpg")
    truncated = product_with_image(image=image_bytes(size=(300, 300))[:500])
    report = _embed_all()
    assert report.embedded == 1 and report.failed == 2
    assert good.visrec_images.get().status == "ready"
    for product in (bad, truncated):
        image = product.visrec_images.get()
        assert image.status == "failed"
        assert image.error
    assert not ImageEmbedding.objects.filter(image__product__in=[bad, truncated]).exists()


def test_re_running_embeds_nothing_new(product_with_image):
    product_with_image()
    _embed_all()
    report = _embed_all()
    assert report.embedded == 0 and report.skipped == 1
    assert ImageEmbedding.objects.count() == 1


def test_version_is_recorded_and_hnsw_index_exists(product_with_image):
    product_with_image()
    _embed_all()
    model = EmbeddingModel.objects.get()
    assert model.is_active and model.backbone == DEFAULT and model.dimensions == DEFAULT_DIMENSIONS
    assert len(model.weights_sha256) == 64 and model.preprocessing["mean"] == [0.5, 0.5, 0.5]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [model.index_name])
        (indexdef,) = cursor.fetchone()
    assert "hnsw" in indexdef and f"halfvec({DEFAULT_DIMENSIONS})" in indexdef and "halfvec_cosine_ops" in indexdef


def test_the_hnsw_index_is_built_as_configured(product_with_image, settings):
    # given a shop that trades some graph quality for a faster index build (a large catalogue)
    settings.VISREC = {"HNSW_M": 12, "HNSW_EF_CONSTRUCTION": 32}
    product_with_image()
    # when its first version is embedded
    _embed_all()
    # then the version's index was built with those parameters
    model = EmbeddingModel.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [model.index_name])
        (indexdef,) = cursor.fetchone()
    assert "m='12'" in indexdef and "ef_construction='32'" in indexdef


def test_similar_items_query_uses_the_hnsw_index(product_with_image):
    from recommendations import serving

    product = product_with_image()
    _embed_all()
    model = EmbeddingModel.objects.get()
    vector = serving.product_vector(product, model)
    sql, params = serving.neighbour_sql(vector, model, 10)
    with connection.cursor() as cursor:
        # A tiny table is cheaper to sort; forbid that so the plan shows the index matches.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_sort = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
        cursor.execute("RESET enable_sort")
    assert model.index_name in plan
