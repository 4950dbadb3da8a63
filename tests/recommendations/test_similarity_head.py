"""The fitted descriptor: a similarity head learned from the shop's categories, switched to without the CNN."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from pgvector import HalfVector

from catalog.models import Category, Product
from recommendations import embedding, serving, similarity, tasks
from recommendations.ml.backbones import DESCRIPTORS
from recommendations.ml.head import HeadSpec, NotEnoughLabels, SimilarityHead, join
from recommendations.ml.images import load_image
from recommendations.models import (
    EmbeddingHead,
    EmbeddingModel,
    ImageEmbedding,
    ImageState,
    ProductSnapshot,
    TaskRun,
)
from recommendations.sync import sync_products
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db

FITTED = "efficientnet_lite0_fitted"
A, W = DESCRIPTORS[FITTED].head_weight, DESCRIPTORS[FITTED].colour_weight
CNN, HEAD, COLOUR = 1280, 128, 500
SMALL = HeadSpec(hidden=64, epochs=40)  # the shape of the real head, fitted in a fraction of a second
HEALTH_URL = "/admin/recommendations/rule/health/"


@pytest.fixture(autouse=True)
def _fitted_backbone(settings, monkeypatch):
    settings.VISREC = {"BACKBONE": FITTED}
    monkeypatch.setattr(similarity, "DEFAULT_SPEC", SMALL)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def catalogue(db):
    """``build(categories=2, n=160)``: products whose CNN vectors confuse their categories, served head-less.

    Each product's CNN vector is one of 8 looks (shared by every category) plus noise
    and a faint direction per category: by the CNN alone about half the neighbours are
    of another category. The vectors are written straight into the fitted descriptor's
    head-less version (``[cnn, colour]``), active, as the re-embedding would leave it.
    """

    def build(categories: int = 2, n: int = 160, seed: int = 0) -> SimpleNamespace:
        rng = np.random.default_rng(seed)
        cats = [Category.objects.create(name=f"Type {c}", slug=f"type-{seed}-{c}") for c in range(categories)]
        labels = np.arange(n) % categories
        products = Product.objects.bulk_create(
            [Product(sku=f"H{seed}-{i:04d}", title=f"Item {i}", category=cats[labels[i]], stock=5) for i in range(n)]
        )
        sync_products([p.pk for p in products])
        images = ImageState.objects.bulk_create(
            [ImageState(product=p, key=f"h{p.pk}", is_primary=True, status=ImageState.Status.READY) for p in products]
        )
        looks = _unit(rng.normal(size=(8, CNN)))
        direction = _unit(rng.normal(size=(categories, CNN)))
        cnn = _unit(looks[(np.arange(n) // categories) % 8] + 0.6 * _unit(rng.normal(size=(n, CNN))))
        cnn = _unit(cnn + 0.05 * direction[labels])
        colour = _unit(np.abs(rng.normal(size=(n, COLOUR))) ** 4)
        backbone = embedding.get_embedder().backbone
        model, _ = embedding.version_record(backbone)
        model.ensure_index()
        embedding.activate_embedding_model(model)
        vectors = backbone.compose(cnn, colour)
        ImageEmbedding.objects.bulk_create(
            [ImageEmbedding(image=im, model=model, vector=HalfVector(v)) for im, v in zip(images, vectors, strict=True)]
        )
        category = {p.pk: labels[i] for i, p in enumerate(products)}
        return SimpleNamespace(products=products, images=images, model=model, category=category, cats=cats)

    return build


def _vectors(model: EmbeddingModel) -> dict[int, np.ndarray]:
    rows = ImageEmbedding.objects.filter(model=model).values_list("image_id", "vector")
    return {pk: np.asarray(v, dtype=np.float32) for pk, v in rows}


def _same_category_at(shop, model: EmbeddingModel, k: int = 5) -> float:
    """Same-category precision@k of every product's nearest products under ``model``'s vectors."""
    rows = list(ImageEmbedding.objects.filter(model=model).values_list("image__product_id", "vector"))
    labels = np.array([shop.category[pk] for pk, _ in rows])
    v = np.stack([np.asarray(vec, dtype=np.float32) for _, vec in rows])
    scores = v @ v.T
    np.fill_diagonal(scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def _served_same_category(client, shop, k: int = 5, anchors: int = 16) -> float:
    """The same, through the similar-items API (the vectors it serves)."""
    serving.forget_active()
    hits = []
    for product in shop.products[:anchors]:
        response = client.get(f"/api/v1/products/{product.pk}/similar/?limit={k}")
        assert response.status_code == 200
        hits += [shop.category[r["id"]] == shop.category[product.pk] for r in response.json()["results"]]
    assert len(hits) == k * anchors
    return float(np.mean(hits))


def _head(record: EmbeddingHead) -> SimilarityHead:
    return SimilarityHead.from_bytes(bytes(EmbeddingHead.objects.get(pk=record.pk).data))


def test_the_fitted_descriptor_starts_head_less(product_with_image):
    product = product_with_image(image=make_image(color=(30, 50, 190), shape="circle", size=(224, 224)))
    embedding.embed_images([product.visrec_images.get().pk])
    version = EmbeddingModel.objects.get(is_active=True)
    assert version.backbone == FITTED and version.dimensions == CNN + COLOUR
    assert "head" not in version.preprocessing and version.preprocessing["colour"]["weight"] == W
    assert not EmbeddingHead.objects.exists()
    stored = np.asarray(ImageEmbedding.objects.get(model=version).vector, dtype=np.float32)[None]
    cnn, colour = embedding.get_embedder().backbone.split(stored)
    np.testing.assert_allclose(stored, np.concatenate([np.sqrt(1 - W) * cnn, np.sqrt(W) * colour], axis=1), atol=2e-3)


def test_fitting_switches_to_the_joined_vectors_without_the_cnn(catalogue, client):
    shop = catalogue()
    old = shop.model
    before = _vectors(old)
    served_before = _served_same_category(client, shop)
    # when the head is fitted (the Celery task on the training queue)
    result = tasks.fit_similarity_head.apply().get()
    # then the active version joins it, and its vectors are the old ones' parts joined anew
    record = EmbeddingHead.objects.get()
    new = EmbeddingModel.objects.get(is_active=True)
    assert result == {"head": record.sha256, "version": new.pk, "active": True}
    assert new.preprocessing["head"] == {**SMALL.describe(), "sha256": record.sha256, "weight": A}
    assert new.dimensions == CNN + HEAD + COLOUR and new.backbone == FITTED
    assert (record.categories, record.products, record.category_counts) == (2, 160, {str(c.pk): 80 for c in shop.cats})
    ids = sorted(before)
    old_vectors = np.stack([before[pk] for pk in ids])
    cnn, colour = _unit(old_vectors[:, :CNN]), _unit(old_vectors[:, -COLOUR:])
    after = _vectors(new)
    assert sorted(after) == ids
    expected = join(cnn, _head(record).project(cnn), colour, A, W)
    np.testing.assert_allclose(np.stack([after[pk] for pk in ids]), expected, atol=3e-3)
    # the old version's vectors are gone, the new one has its index
    assert not ImageEmbedding.objects.filter(model=old).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [new.index_name])
        assert cursor.fetchone()
    # and similar items are of the product's category where the CNN confused them
    assert served_before < 0.7
    assert _served_same_category(client, shop) > 0.9


def test_same_category_neighbours_improve_on_a_catalogue_the_cnn_confuses(catalogue):
    shop = catalogue()
    before = _same_category_at(shop, shop.model)
    similarity.fit_similarity_head()
    after = _same_category_at(shop, EmbeddingModel.objects.get(is_active=True))
    assert before < 0.65
    assert after > 0.9


def test_an_image_embedded_after_the_switch_gets_the_head(catalogue, product_with_image):
    shop = catalogue()
    similarity.fit_similarity_head()
    active = EmbeddingModel.objects.get(is_active=True)
    data = make_image(color=(200, 30, 30), shape="stripes", size=(224, 224))
    image = product_with_image(image=data, category=shop.cats[0]).visrec_images.get()
    # when a worker embeds the new image
    report = embedding.embed_images([image.pk])
    # then it is stored in the head's version, its head part computed from its CNN part
    assert report.embedded == 1
    assert EmbeddingModel.objects.get(is_active=True) == active == embedding.current_embedding_model()
    assert ImageEmbedding.objects.filter(image=image).count() == 1  # the head-less version is gone for good
    stored = np.asarray(ImageEmbedding.objects.get(image=image, model=active).vector, dtype=np.float32)
    headless = embedding.get_embedder(FITTED)
    assert headless.backbone.head is None
    cnn, colour = headless.backbone.split(headless.embed([load_image(data)]))
    expected = join(cnn, _head(EmbeddingHead.objects.get()).project(cnn), colour, A, W)[0]
    np.testing.assert_allclose(stored, expected, atol=3e-3)


def test_an_image_without_a_vector_yet_is_embedded_by_the_normal_path_which_switches(catalogue, product_with_image):
    shop = catalogue()
    pending = product_with_image(image=make_image(shape="square", size=(224, 224))).visrec_images.get()
    # when the head is fitted while an uploaded image waits for its embedding
    report = similarity.fit_similarity_head()
    # then the new version waits for it and the old one keeps serving
    assert not report.switched and report.missing == 1
    assert EmbeddingModel.objects.get(is_active=True) == shop.model
    assert "has not finished" in similarity.head_status().message
    # when its embedding task runs, into both versions, the new one is complete and switches
    embedding.embed_images([pending.pk])
    new = EmbeddingModel.objects.get(is_active=True)
    assert new == report.version
    assert ImageEmbedding.objects.filter(model=new).count() == len(shop.images) + 1


def test_a_vector_stored_in_the_old_version_during_the_derivation_is_not_lost(catalogue, monkeypatch):
    shop = catalogue()
    late = ImageState.objects.create(product=shop.products[0], key="late", status=ImageState.Status.READY)
    twin = shop.images[1]  # the late image's vector is a copy of this one's
    late_vector = ImageEmbedding.objects.get(image=twin, model=shop.model).vector
    derive, calls = similarity.derive, []

    def derive_while_a_worker_writes_the_old_version(source, target, backbone):
        calls.append(source)
        done = derive(source, target, backbone)
        if len(calls) == 1:  # a worker that started before the head existed stores into the old version only
            ImageEmbedding.objects.create(image=late, model=source, vector=late_vector)
        return done

    monkeypatch.setattr(similarity, "derive", derive_while_a_worker_writes_the_old_version)
    report = similarity.fit_similarity_head()
    assert report.switched and report.derived == len(shop.images) + 1
    derived = _vectors(report.version)
    np.testing.assert_allclose(derived[late.pk], derived[twin.pk], atol=1e-3)


def test_not_enough_labels_changes_nothing(catalogue):
    shop = catalogue(categories=1)
    versions = list(EmbeddingModel.objects.values_list("pk", "is_active"))
    vectors = ImageEmbedding.objects.count()
    with pytest.raises(NotEnoughLabels, match="1 category has"):
        similarity.fit_similarity_head()
    with pytest.raises(CommandError, match="No similarity head fitted, nothing changed: 1 category has"):
        call_command("visrec_fit_head")
    assert "error" in tasks.fit_similarity_head.apply().get()
    assert similarity.refit_if_due().startswith("similarity head not fitted: 1 category has")
    assert not EmbeddingHead.objects.exists()
    assert list(EmbeddingModel.objects.values_list("pk", "is_active")) == versions
    assert ImageEmbedding.objects.count() == vectors == ImageEmbedding.objects.filter(model=shop.model).count()
    assert "1 category has 2 or more products" in similarity.head_status().message


def test_the_head_is_loaded_by_checksum_after_a_restart(catalogue):
    catalogue()
    out = io.StringIO()
    call_command("visrec_fit_head", stdout=out)
    assert "Similarity head fitted in" in out.getvalue() and "active as" in out.getvalue()
    active = EmbeddingModel.objects.get(is_active=True)
    record = EmbeddingHead.objects.get()
    # a new process: nothing loaded yet
    embedding._embedder.cache_clear()
    embedding._with_head.cache_clear()
    assert embedding.current_embedding_model() == active
    embedder = embedding._embedder_for(active)
    assert embedder.backbone.preprocessing["head"]["sha256"] == record.sha256
    x = _unit(np.random.default_rng(5).normal(size=(4, CNN)))
    np.testing.assert_array_equal(embedder.backbone.head.project(x), _head(record).project(x))
    assert embedding.embedder_of(active).backbone.dimensions == active.dimensions


def test_nightly_training_fits_the_head_when_missing_or_the_categories_changed(catalogue):
    shop = catalogue()
    # the nightly run (there are no interactions, so the recommenders do not train)
    tasks.train_models.apply()
    run = TaskRun.objects.get(kind=TaskRun.TRAIN)
    assert "similarity head (no similarity head yet): fitted" in run.message
    first = EmbeddingHead.objects.get()
    assert EmbeddingModel.objects.get(is_active=True).preprocessing["head"]["sha256"] == first.sha256
    assert similarity.refit_if_due() == f"similarity head: {first} is up to date"
    # when a fifth of the products are filed under a new category
    new_type = Category.objects.create(name="Type new", slug="type-new")
    moved = [p.pk for p in shop.products[:32]]
    ProductSnapshot.objects.filter(product_id__in=moved).update(category_id=new_type.pk)  # as the sync copies it
    message = similarity.refit_if_due()
    # then a new head is fitted on three categories, switched to, and the first one dropped
    assert "the products per category changed by 40% since the last head" in message
    second = EmbeddingHead.objects.get()
    assert second.sha256 != first.sha256 and second.categories == 3
    assert EmbeddingModel.objects.get(is_active=True).preprocessing["head"]["sha256"] == second.sha256


def test_cockpit_health_page_shows_the_head_or_why_there_is_none(catalogue, admin_client, settings):
    settings.VISREC = {"BACKBONE": "efficientnet_lite0"}
    assert "has no similarity head; set VISREC" in admin_client.get(HEALTH_URL).context["similarity_head"].message
    assert similarity.refit_if_due() == ""
    settings.VISREC = {"BACKBONE": FITTED}
    catalogue()
    response = admin_client.get(HEALTH_URL)
    assert response.context["similarity_head"].message.startswith("None yet: the nightly training fits it")
    similarity.fit_similarity_head()
    response = admin_client.get(HEALTH_URL)
    status = response.context["similarity_head"]
    assert status.serving and status.sha256 == EmbeddingHead.objects.get().sha256
    assert " on 160 products in 2 categories." in status.message
    assert status.message in response.content.decode()


def test_a_switch_left_unfinished_is_finished_by_the_nightly_run(catalogue, monkeypatch):
    shop = catalogue()
    switch_to = similarity.switch_to

    def worker_lost(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(similarity, "switch_to", worker_lost)
    with pytest.raises(RuntimeError):
        similarity.fit_similarity_head()
    # the head and its version were stored, nothing was derived, the old version serves
    record = EmbeddingHead.objects.get()
    assert EmbeddingModel.objects.get(is_active=True) == shop.model
    monkeypatch.setattr(similarity, "switch_to", switch_to)
    message = similarity.refit_if_due()
    assert message.startswith(f"similarity head: finished the switch to {record}: derived 160 vectors")
    active = EmbeddingModel.objects.get(is_active=True)
    assert active.preprocessing["head"]["sha256"] == record.sha256
    assert ImageEmbedding.objects.filter(model=active).count() == len(shop.images)
