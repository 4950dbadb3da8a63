"""The plugin's migrations keep an existing demo database's rows when state moves into visrec."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

BEFORE = [
    ("catalog", "0002_interaction_event_key_event_batch"),
    ("recommendations", "0004_cockpit_rules_judgements_experiments_tasks"),
]


def _executor() -> MigrationExecutor:
    """An executor over the unsquashed history (the test database was built by the squashed migration)."""
    executor = MigrationExecutor(connection)
    loader = MigrationLoader(connection, replace_migrations=False)
    for key, migration in list(loader.disk_migrations.items()):
        if migration.replaces and key in loader.graph.nodes:
            loader.graph.remove_replacement_node(key, migration.replaces)
    executor.loader = loader
    return executor


def _migrate(targets):
    executor = _executor()
    executor.migrate(targets)
    return _executor().loader.project_state(targets).apps


def _latest():
    return _executor().loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_shopper_events_survive_their_move_into_the_plugin():
    # given a database at the last migrations before the move, with events and a batch
    old = _migrate(BEFORE)
    product = old.get_model("catalog", "Product").objects.create(sku="M-1", title="Kept", price=1, stock=1)
    Interaction = old.get_model("catalog", "Interaction")
    Interaction.objects.create(product_id=product.pk, kind="purchase", session_key="s-1", event_key="k:1")
    Interaction.objects.create(product_id=product.pk, kind="view", session_key="s-2")
    old.get_model("catalog", "EventBatch").objects.create(
        scope="session:s-1", key="b-1", fingerprint="f", status_code=201, response={"ok": True}
    )

    # when the plugin's migrations run
    new = _migrate(_latest())

    # then the rows are the plugin's, unchanged, and new ones can be added
    moved = new.get_model("recommendations", "Interaction")
    assert sorted(moved.objects.values_list("product_id", "kind", "session_key", "event_key")) == [
        (product.pk, "purchase", "s-1", "k:1"),
        (product.pk, "view", "s-2", None),
    ]
    batch = new.get_model("recommendations", "EventBatch").objects.get()
    assert (batch.key, batch.response) == ("b-1", {"ok": True})
    moved.objects.create(product_id=product.pk, kind="click", session_key="s-3")
    assert moved.objects.count() == 3
    assert "catalog_interaction" not in connection.introspection.table_names()


@pytest.mark.django_db(transaction=True)
def test_image_state_and_vectors_survive_their_move_into_the_plugin():
    # given a demo database before the move: an embedded image and a failed import, a category rule
    old = _migrate(BEFORE)
    category = old.get_model("catalog", "Category").objects.create(name="Mugs", slug="mugs")
    product = old.get_model("catalog", "Product").objects.create(sku="M-2", title="Mug", price=1, stock=1)
    Image = old.get_model("catalog", "ProductImage")
    ready = Image.objects.create(
        product=product, file="products/ab/mug.jpg", is_primary=True, sha256="ab" * 32, status="ready", width=8
    )
    failed = Image.objects.create(product=product, file="", position=1, status="failed", error="image file not found")
    model = old.get_model("recommendations", "EmbeddingModel").objects.create(
        key="k", backbone="b", weights_sha256="w", dimensions=3, is_active=True
    )
    old.get_model("recommendations", "ImageEmbedding").objects.create(image=ready, model=model, vector=[1, 0, 0])
    old.get_model("recommendations", "Rule").objects.create(kind="exclude_category", category=category)

    # when the plugin's migrations run
    new = _migrate(_latest())

    # then visrec's image state carries the status, checksum and vector; the shop keeps its columns
    State = new.get_model("recommendations", "ImageState")
    moved = State.objects.get(pk=ready.pk)
    assert (moved.product_id, moved.key, moved.status, moved.sha256, moved.width) == (
        product.pk,
        str(ready.pk),
        "ready",
        "ab" * 32,
        8,
    )
    assert new.get_model("recommendations", "ImageEmbedding").objects.get().image_id == moved.pk
    assert State.objects.get(pk=failed.pk).error == "image file not found"
    assert new.get_model("catalog", "ProductImage").objects.get(pk=failed.pk).import_error == "image file not found"
    assert new.get_model("recommendations", "Rule").objects.get().category_id == category.pk
    State.objects.create(product_id=product.pk, key="new")  # the id sequence continues after the copied ids


@pytest.mark.django_db(transaction=True)
def test_clicks_keep_the_first_of_each_impression_when_one_click_per_impression_begins():
    import datetime
    import uuid

    # given clicks counted per position: two on one list, one on another
    old = _migrate([("recommendations", "0006_image_state_product_snapshot_rule_category_ids")])
    Click = old.get_model("recommendations", "Click")
    first_list, other_list = uuid.uuid4(), uuid.uuid4()
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for impression, position, minutes in [(first_list, 2, 5), (first_list, 0, 1), (other_list, 1, 3)]:
        when = at + datetime.timedelta(minutes=minutes)
        Click.objects.create(impression_id=impression, position=position, widget="w", product_id=1, created_at=when)

    # when the migration runs
    new = _migrate(_latest())

    # then each list keeps its earliest click, and a second click on a list is refused
    kept = new.get_model("recommendations", "Click").objects
    assert sorted(kept.values_list("impression_id", "position")) == sorted([(first_list, 0), (other_list, 1)])
    with pytest.raises(IntegrityError):
        kept.create(impression_id=other_list, position=4, widget="w", product_id=9, created_at=at)


@pytest.mark.django_db(transaction=True)
def test_products_without_a_flagged_image_get_their_first_image_as_primary():
    # given states synced before the fix: one product flagged none of its images, one flagged its second
    old = _migrate([("recommendations", "0010_taskrun_heartbeat_deliveries")])
    Product, State = old.get_model("catalog", "Product"), old.get_model("recommendations", "ImageState")
    unflagged, flagged = (Product.objects.create(sku=f"P-{n}", title="P", price=1, stock=1) for n in (1, 2))
    later = State.objects.create(product_id=unflagged.pk, key="a", position=2)
    first = State.objects.create(product_id=unflagged.pk, key="b", position=1)
    State.objects.create(product_id=flagged.pk, key="c", position=0)
    chosen = State.objects.create(product_id=flagged.pk, key="d", position=1, is_primary=True)

    # when the migrations run
    new = _migrate(_latest())

    # then each product has exactly one primary image: the first by position, or the one the shop flagged
    primary = new.get_model("recommendations", "ImageState").objects.filter(is_primary=True)
    assert sorted(primary.values_list("pk", flat=True)) == sorted([first.pk, chosen.pk])
    assert State.objects.filter(pk=later.pk).exists()
