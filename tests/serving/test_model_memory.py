"""Web processes share the active model's arrays (memory-mapped) and serve exactly what a private copy serves."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from catalog.models import Category, Product
from recommendations import serving, training
from recommendations.conf import DEFAULTS, visrec_settings
from recommendations.ml import mapped
from recommendations.ml.mf import ALS
from recommendations.models import Interaction, ModelVersion
from recommendations.serving import versions
from recommendations.sync import sync_products

pytestmark = pytest.mark.django_db

SHOPPERS = 40


@pytest.fixture
def fresh_process(settings, tmp_path, monkeypatch):
    """An empty model cache (a new web process), artifacts under ``tmp_path``, every array mapped."""
    settings.VISREC = {**settings.VISREC, "CACHE_DIR": str(tmp_path)}
    monkeypatch.setattr(versions, "_models", {})
    monkeypatch.setattr(mapped, "MMAP_MIN_BYTES", 0)
    serving.forget_active()

    def restart(**conf):
        """A new process (own model cache and list cache namespace) with ``conf`` in VISREC."""
        settings.VISREC = {**settings.VISREC, **conf}
        monkeypatch.setattr(versions, "_models", {})
        monkeypatch.setitem(DEFAULTS, "CACHE_PREFIX", f"{DEFAULTS['CACHE_PREFIX']}r")
        visrec_settings.reset()
        serving.forget_active()

    return restart


def _catalogue(n: int = 120) -> list[Product]:
    category = Category.objects.create(name="Shirts", slug="mm-shirts")
    products = Product.objects.bulk_create(
        [Product(sku=f"MM-{i:04d}", title=f"Shirt {i}", category=category, stock=3) for i in range(n)]
    )
    sync_products([p.pk for p in products])
    return products


def _factor_model(n_items: int, n_users: int, seed: int = 1) -> ALS:
    """A fitted-looking ALS: random factors, every seventh item never bought (zero factors), a popularity prior."""
    rng = np.random.default_rng(seed)
    model = ALS(factors=8, regularization=0.1, prior_weight=0.3)
    model.item_factors = rng.standard_normal((n_items, 8)).astype(np.float32)
    model.item_factors[::7] = 0.0
    model.user_factors = rng.standard_normal((n_users, 8)).astype(np.float32)
    model.prior, model.weight = rng.standard_normal(n_items).astype(np.float32), 0.3
    return model


def _shopper_keys(n: int) -> np.ndarray:
    return np.array([f"s{(i * 7919) % 1000:04d}-visitor" for i in range(n)])  # unsorted, as a snapshot's are


def _store(model, products, users) -> ModelVersion:
    path = training.save_artifact(model, users, np.array(sorted(p.pk for p in products), dtype=np.int64))
    version = ModelVersion.objects.create(kind=model.name, params=model.get_params(), artifact=path.name)
    training.activate(version)
    return version


def _old_format_artifact(model, products, users) -> ModelVersion:
    """An artifact as the code before memory-mapping wrote it (one compressed .npz, ids beside it, no copies)."""
    name = "als-000000000000"
    meta = {"kind": model.name, "params": model.get_params(), "format": 1}
    state = {f"state__{k}": np.asarray(v) for k, v in model.get_state().items()}
    with open(training.artifacts_dir() / f"{name}.npz", "wb") as f:
        np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **state)
    items = np.array(sorted(p.pk for p in products), dtype=np.int64)
    np.savez(training.artifacts_dir() / f"{name}.ids.npz", users=users.astype(str), items=items)
    version = ModelVersion.objects.create(kind=model.name, params=model.get_params(), artifact=f"{name}.npz")
    training.activate(version)
    return version


def _views(products, users) -> None:
    """Each shopper viewed three products (their history, which for you leaves out)."""
    events = [
        Interaction(product=products[(3 * i + j) % len(products)], kind="view", session_key=key[1:])
        for i, key in enumerate(users)
        for j in range(3)
    ]
    Interaction.objects.bulk_create(events)


def _served(products, users) -> tuple[list[list[int]], list[list[int]]]:
    similar = [serving.similar_items(p, limit=8, cached=False).product_ids for p in products[:30]]
    for_you = []
    for key in users[:10]:
        rec = serving.for_you(session_key=key[1:], limit=6)
        assert rec.source == "model"
        for_you.append(rec.product_ids)
    return similar, for_you


def test_the_active_models_arrays_are_mapped_and_serve_what_a_private_copy_serves(fresh_process):
    # given: an active factor model over 120 products and 40 shoppers with a history
    products, users = _catalogue(), _shopper_keys(SHOPPERS)
    version = _store(_factor_model(len(products), SHOPPERS), products, users)
    _views(products, users)
    # when: a web process serves it (memory-mapped, the default)
    similar, for_you = _served(products, users)
    loaded = serving.loaded_model(version)
    # then: every array it holds for the model is a read-only map of a shared file, none a private copy
    held = {
        "item_factors": loaded.model.item_factors,
        "user_factors": loaded.model.user_factors,
        "prior": loaded.model.prior,
        "neighbour factors": loaded.neighbours.item_factors,
        "neighbour columns": loaded.neighbour_cols,
        "neighbour index columns": loaded.index.cols,
        "neighbour index vectors": loaded.index.unit,
        "product pks": loaded.column.sorted_keys,
        "shopper keys": loaded.row.sorted_keys,
        "shopper rows": loaded.row.positions,
    }
    assert {name: mapped.is_mapped(a) for name, a in held.items()} == dict.fromkeys(held, True)
    assert loaded.model._subset(loaded.neighbour_cols)[0] is loaded.neighbours.item_factors  # for you copies nothing
    assert any(similar) and all(len(ids) == 6 for ids in for_you)
    # and: a process that reads the artifact into its own memory serves the very same lists
    fresh_process(MODEL_MMAP=False)
    assert (similar, for_you) == _served(products, users)
    assert not mapped.is_mapped(serving.loaded_model(version).model.item_factors)


def test_an_artifact_written_before_memory_mapping_loads_both_ways(fresh_process):
    products, users = _catalogue(), _shopper_keys(SHOPPERS)
    model = _factor_model(len(products), SHOPPERS, seed=2)
    version = _old_format_artifact(model, products, users)
    _views(products, users)
    mapped_lists = _served(products, users)
    assert mapped.is_mapped(serving.loaded_model(version).model.item_factors)
    fresh_process(MODEL_MMAP=False)
    assert _served(products, users) == mapped_lists
    # the lists are the model's own: a product's similar items are its nearest items by factor cosine
    first = products[1]
    cols = model.similar_items(np.array([1]), N=8)[0][0]
    pks = sorted(p.pk for p in products)
    assert serving.similar_items(first, limit=8, cached=False).product_ids == [pks[c] for c in cols]


def test_past_the_exact_size_a_product_page_lists_its_neighbours_from_the_cells_searched(fresh_process):
    # given: an active factor model over 120 products, searched by cells past 30 items, every cell probed
    fresh_process(MODEL_NEIGHBOUR_EXACT=30, MODEL_NEIGHBOUR_PROBES=1_000)
    products, users = _catalogue(), _shopper_keys(SHOPPERS)
    model = _factor_model(len(products), SHOPPERS, seed=5)
    version = _store(model, products, users)
    pks = sorted(p.pk for p in products)
    # when: shoppers open product pages
    served = [serving.similar_items(p, limit=8, cached=False).product_ids for p in products[1:40:3]]
    # then: the cells were used (memory-mapped, like the other arrays) and each list is the model's own
    index = serving.loaded_model(version).index
    assert not index.exact and mapped.is_mapped(index.unit) and mapped.is_mapped(index.centres)
    expected = model.similar_items(np.arange(1, 40, 3), N=8)[0]
    has_factors = np.linalg.norm(model.item_factors[1:40:3], axis=1) > 0
    assert [ids for ids, known in zip(served, has_factors, strict=True) if known] == [
        [pks[c] for c in cols] for cols, known in zip(expected, has_factors, strict=True) if known
    ]
    # and: with fewer cells probed a list holds products of the probed cells only
    fresh_process(MODEL_NEIGHBOUR_EXACT=30, MODEL_NEIGHBOUR_PROBES=1)
    index = serving.loaded_model(version).index
    anchor = int(np.flatnonzero(np.linalg.norm(model.item_factors, axis=1) > 0)[1])
    query = model.item_factors[anchor] / np.linalg.norm(model.item_factors[anchor])
    cell = int(np.argmax(index.centres @ query))
    in_cell = {pks[c] for c in index.cols[index.offsets[cell] : index.offsets[cell + 1]]}
    listed = serving.similar_items(next(p for p in products if p.pk == pks[anchor]), limit=8, cached=False)
    assert listed.product_ids and set(listed.product_ids) <= in_cell


def test_training_writes_the_copies_before_the_version_can_serve(fresh_process, small_catalog):
    # given: shoppers with views, trained into an ALS version
    shirts = [small_catalog[k] for k in ("anchor", "twin", "cousin")]
    mugs = [small_catalog[f"other{i}"] for i in range(4)]
    for n in range(12):
        for product in shirts if n % 2 else mugs:
            Interaction.objects.create(product=product, kind="view", session_key=f"shopper{n}")
    version = training.train(["als"])
    folder = mapped.mapped_dir(training.artifacts_dir() / version.artifact)
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {"state__item_factors.npy", "users.npy", "items.npy", "derived__neighbour_cols.npy"} <= set(written)
    # when: a web process loads it
    assert serving.loaded_model(version) is not None
    # then: it only maps what training wrote
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written


def test_a_switch_to_a_new_version_leaves_the_old_ones_arrays_valid(fresh_process):
    products, users = _catalogue(), _shopper_keys(SHOPPERS)
    old = _store(_factor_model(len(products), SHOPPERS, seed=3), products, users)
    serving_old = serving.loaded_model(old)
    before = serving_old.similar_items(1, 5)
    # when: a new version is activated (the old one may still be answering a request)
    new = _store(_factor_model(len(products), SHOPPERS, seed=4), products, users)
    serving.forget_active()
    # then: requests get the new version; the old one's mapped arrays still answer as before
    assert serving.active().version_id == new.pk
    assert serving.loaded_model(serving.active().version).version_id == new.pk
    after = serving_old.similar_items(1, 5)
    assert before[0].tolist() == after[0].tolist()
    assert serving.loaded_model(new).similar_items(1, 5)[0].tolist() != before[0].tolist()


def test_a_cache_folder_that_cannot_be_written_falls_back_to_private_copies(fresh_process, monkeypatch, caplog):
    products, users = _catalogue(40), _shopper_keys(10)
    version = _store(_factor_model(40, 10), products, users)
    monkeypatch.setattr(versions, "_models", {})
    for folder in training.artifacts_dir().glob("*.mmap"):  # as if training could not write them either
        for file in folder.iterdir():
            file.unlink()

    def read_only(path, array):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(mapped, "write_array", read_only)
    with caplog.at_level(logging.WARNING, logger="recommendations.serving.versions"):
        loaded = serving.loaded_model(version)
    assert loaded is not None and not mapped.is_mapped(loaded.model.item_factors)
    assert "loading it into memory" in caplog.text
    assert len(loaded.similar_items(1, 5)[0]) == 5


@pytest.mark.parametrize(
    ("keys", "sorted_already"),
    [(np.array([3, 8, 20, 41], dtype=np.int64), True), (np.array(["sb", "u2", "sa", "u10"]), False)],
)
def test_key_index_answers_like_the_dict_it_replaces(keys, sorted_already):
    index = versions.key_index(keys, "keys")
    want = {k.item(): i for i, k in enumerate(keys)}
    assert (index.positions is None) == sorted_already
    assert {k: index[k] for k in want} == want and len(index) == len(want) and set(index) == set(want)
    for missing in (0, 9, 100, -1, "u", "u100", "", None, 3.5, b"sb", "3"):
        assert missing not in index and index.get(missing) is None
    with pytest.raises(KeyError):
        index[99]
    twice = versions.key_index(np.array(["b", "a", "b"]), "keys")
    assert twice["b"] == {"b": 0, "a": 1, "b": 2}["b"]  # noqa: F601 (a repeated key: the last position, as a dict)
