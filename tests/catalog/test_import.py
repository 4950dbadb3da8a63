"""The bulk importer: ``manage.py visrec_import`` and ``catalog.importers``."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from catalog import importers
from catalog.models import Category, Product, ProductImage
from recommendations.models import ImageState, Interaction
from tests.fixtures.catalog import state_of
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db

PRODUCT_HEADER = [
    "sku",
    "title",
    "description",
    "category",
    "price",
    "currency",
    "stock",
    "is_active",
    "image",
    "colour",
]
HM_DIR = Path(settings.BASE_DIR).parent / "shared" / "datasets" / "hm"


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def visrec_import(*args: object) -> str:
    out = io.StringIO()
    call_command("visrec_import", *[str(a) for a in args], "--no-progress", stdout=out)
    return out.getvalue()


@pytest.fixture
def shop_files(tmp_path):
    """A products CSV with three good rows and their images under ``images/``."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "red.jpg").write_bytes(make_image(color=(200, 30, 30)))
    (images / "blue.png").write_bytes(make_image(color=(30, 30, 200), fmt="PNG", shape="square"))
    (images / "mug.jpg").write_bytes(make_image(color=(30, 160, 30), shape="triangle"))
    rows = [
        ["A-1", "Red shirt", "Cotton", "Shirts", "19.90", "eur", "5", "yes", "images/red.jpg", "red"],
        ["A-2", "Blue shirt", "", "shirts", "24.5", "EUR", "0", "no", "images/blue.png", ""],
        ["B-1", "Green mug", "", "Mugs & Cups", "7", "USD", "12", "", "images/mug.jpg", "green"],
    ]
    return write_csv(tmp_path / "products.csv", PRODUCT_HEADER, rows), tmp_path


def test_good_rows_create_products_categories_and_images(shop_files, category_factory):
    # given a category whose slug the new "Mugs & Cups" would take
    category_factory("Kitchen", slug="mugs-cups")
    products_csv, root = shop_files

    output = visrec_import("--products", products_csv, "--images", root)

    assert "Products: 3 created, 0 updated, 0 skipped, 0 failed" in output
    assert "Images: 3 stored" in output
    assert "visrec_embed --missing` to embed 3 new image(s)" in output
    red, blue, mug = (Product.objects.get(sku=s) for s in ("A-1", "A-2", "B-1"))
    assert (red.title, red.price, red.currency, red.stock, red.is_active) == (
        "Red shirt",
        Decimal("19.90"),
        "EUR",
        5,
        True,
    )
    assert red.attributes == {"colour": "red"} and blue.attributes == {}
    assert (blue.price, blue.is_active, mug.currency, mug.is_active) == (Decimal("24.50"), False, "USD", True)
    assert red.category == blue.category, "category names match case-insensitively"
    assert mug.category.name == "Mugs & Cups" and mug.category.slug == "mugs-cups-2"
    image = red.images.get()
    assert (state_of(image).status, image.is_primary, image.width, image.height) == ("pending", True, 120, 120)
    assert default_storage.exists(image.file.name) and len(image.sha256) == 64


def test_reimport_changes_nothing(shop_files):
    products_csv, root = shop_files
    visrec_import("--products", products_csv, "--images", root)
    before = list(ProductImage.objects.values_list("pk", "file", "sha256").order_by("pk"))
    stamps = list(Product.objects.values_list("updated_at", flat=True).order_by("pk"))

    output = visrec_import("--products", products_csv, "--images", root)

    assert "Products: 0 created, 0 updated, 3 skipped, 0 failed" in output
    assert "Images: 0 stored (0 replacing an earlier one), 3 unchanged, 0 failed" in output
    assert "visrec_embed" not in output
    assert list(ProductImage.objects.values_list("pk", "file", "sha256").order_by("pk")) == before
    assert list(Product.objects.values_list("updated_at", flat=True).order_by("pk")) == stamps
    assert (Product.objects.count(), Category.objects.count()) == (3, 2)


def test_changed_row_updates_fields_and_a_changed_image_replaces_the_primary(
    shop_files, django_capture_on_commit_callbacks
):
    products_csv, root = shop_files
    visrec_import("--products", products_csv, "--images", root)
    old = ProductImage.objects.get(product__sku="A-1")
    (root / "images" / "red.jpg").write_bytes(make_image(color=(250, 120, 0), shape="square"))
    write_csv(
        products_csv,
        ["sku", "title", "price", "image", "size"],
        [["A-1", "Red shirt v2", "21", "images/red.jpg", "XL"], ["A-2", "Blue shirt", "24.50", "images/blue.png", ""]],
    )

    with django_capture_on_commit_callbacks(execute=True):
        output = visrec_import("--products", products_csv, "--images", root)

    assert "Products: 0 created, 1 updated, 1 skipped, 0 failed" in output
    assert "Images: 1 stored (1 replacing an earlier one), 1 unchanged" in output
    red = Product.objects.get(sku="A-1")
    assert (red.title, red.price, red.stock, red.description) == ("Red shirt v2", Decimal("21.00"), 5, "Cotton")
    assert red.attributes == {"colour": "red", "size": "XL"}
    new = red.images.get()
    assert new.pk != old.pk and new.sha256 != old.sha256 and (state_of(new).status, new.is_primary) == ("pending", True)
    assert not default_storage.exists(old.file.name), "the replaced file is deleted after commit"


def test_a_failed_image_is_replaced_once_the_file_is_there(tmp_path):
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "image"], [["L-1", "late.jpg"]])
    visrec_import("--products", products_csv)
    (tmp_path / "late.jpg").write_bytes(make_image())

    output = visrec_import("--products", products_csv)

    assert "Products: 0 created, 1 updated" in output and "Images: 1 stored (1 replacing an earlier one)" in output
    image = ProductImage.objects.get()
    assert (state_of(image).status, state_of(image).error, image.is_primary) == ("pending", "", True)


def test_missing_image_still_creates_the_product_and_reports_the_row(tmp_path):
    (tmp_path / "images").mkdir()
    products_csv = write_csv(
        tmp_path / "p.csv", ["sku", "title", "image"], [["OK-1", "No photo", ""], ["M-1", "Lost", "images/nope.jpg"]]
    )

    output = visrec_import("--products", products_csv, "--images", tmp_path)
    again = visrec_import("--products", products_csv, "--images", tmp_path)

    assert (
        "Products: 2 created" in output
        and "Images: 0 stored (0 replacing an earlier one), 0 unchanged, 1 failed" in output
    )
    assert "p.csv row 3 (sku M-1): image file not found: images/nope.jpg" in output
    image = ProductImage.objects.get()
    assert (image.product.sku, state_of(image).status, image.is_primary, image.file.name) == ("M-1", "failed", True, "")
    assert state_of(image).error == "image file not found: images/nope.jpg"
    assert "0 created, 0 updated, 2 skipped" in again and "p.csv row 3 (sku M-1)" in again
    assert ProductImage.objects.get().pk == image.pk, "a re-import adds no second failed row"


def test_corrupt_images_fail_with_a_reason_and_the_run_goes_on(tmp_path):
    good = make_image(size=(200, 160))
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "good.jpg").write_bytes(good)
    names = ["truncated.jpg", "notes.jpg", "empty.jpg", "good.jpg"]
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "image"], [[f"C-{i}", n] for i, n in enumerate(names)])

    output = visrec_import("--products", products_csv, "--report", tmp_path / "report.csv")

    assert (
        "Products: 4 created" in output
        and "Images: 1 stored (0 replacing an earlier one), 0 unchanged, 3 failed" in output
    )
    errors = dict(ImageState.objects.values_list("product__sku", "error"))
    assert "corrupt or truncated" in errors["C-0"] and "not a supported image" in errors["C-1"]
    assert "empty file" in errors["C-2"] and errors["C-3"] == ""
    assert set(ImageState.objects.filter(status="failed").values_list("version", flat=True)) == {""}
    for row, sku in [(2, "C-0"), (3, "C-1"), (4, "C-2")]:
        assert f"p.csv row {row} (sku {sku}): image rejected: " in output
    with (tmp_path / "report.csv").open() as f:
        assert [(r["row"], r["sku"]) for r in csv.DictReader(f)] == [("2", "C-0"), ("3", "C-1"), ("4", "C-2")]


def test_header_only_check_lets_a_truncated_jpeg_through(tmp_path):
    good = make_image()
    (tmp_path / "t.jpg").write_bytes(good[: len(good) // 2])
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "image"], [["T-1", "t.jpg"]])

    visrec_import("--products", products_csv, "--no-decode")

    assert ImageState.objects.get().status == "pending"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../secret.jpg", "image path escapes the images folder"),
        ("/etc/passwd", "absolute image paths are not allowed"),
    ],
)
def test_paths_outside_the_images_folder_are_rejected(tmp_path, path, reason):
    (tmp_path / "secret.jpg").write_bytes(make_image())
    (tmp_path / "shop").mkdir()
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "image"], [["X-1", path]])

    output = visrec_import("--products", products_csv, "--images", tmp_path / "shop")

    assert f"p.csv row 2 (sku X-1): {reason}: {path}" in output
    image = ProductImage.objects.get()
    assert (state_of(image).status, image.file.name, image.sha256) == ("failed", "", "")


def test_interactions_create_shoppers_parse_timestamps_and_report_unknown_skus(tmp_path, product_factory):
    product_factory(sku="0108775015")
    product_factory(sku="B-1")
    rows = [
        ["u1", "0108775015", "", "", "2018-09-20"],
        ["u1", "0108775015", "", "", "2018-09-20"],  # a repeat purchase, kept
        ["u2", "B-1", "view", "", "2020-01-02T03:04:05+02:00"],
        ["u2", "B-1", "rating", "4.5", "1600000000"],
        ["u3", "NOPE", "click", "", "2020-01-01"],
        ["u3", "B-1", "wink", "", "2020-01-01"],
        ["u3", "B-1", "", "", "yesterday"],
    ]
    inter_csv = write_csv(tmp_path / "i.csv", ["user", "sku", "kind", "value", "timestamp"], rows)

    output = visrec_import("--interactions", inter_csv, "--batch-size", 2)
    again = visrec_import("--interactions", inter_csv, "--batch-size", 3)

    assert "Interactions: 4 created, 0 skipped (already imported), 3 failed" in output
    assert "Shoppers: 2 created" in output
    assert "i.csv row 6 (sku NOPE): unknown product sku 'NOPE'" in output
    assert "i.csv row 7 (sku B-1): kind 'wink' is not one of" in output
    assert "i.csv row 8 (sku B-1): timestamp 'yesterday' is neither ISO 8601 nor unix seconds" in output
    assert "Interactions: 0 created, 4 skipped (already imported), 3 failed" in again
    got = sorted(Interaction.objects.values_list("user__username", "product__sku", "kind", "value", "created_at"))
    assert got == [
        ("ext-u1", "0108775015", "purchase", 1.0, datetime(2018, 9, 20, tzinfo=UTC)),
        ("ext-u1", "0108775015", "purchase", 1.0, datetime(2018, 9, 20, tzinfo=UTC)),
        ("ext-u2", "B-1", "rating", 4.5, datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)),
        ("ext-u2", "B-1", "view", 1.0, datetime(2020, 1, 2, 1, 4, 5, tzinfo=UTC)),
    ]
    assert not get_user_model().objects.get(username="ext-u1").has_usable_password()


def test_an_appended_repeat_purchase_is_imported(tmp_path, product_factory):
    product_factory(sku="S-1")
    header, row = ["user", "sku", "timestamp"], ["u1", "S-1", "2020-05-05"]
    visrec_import("--interactions", write_csv(tmp_path / "i.csv", header, [row]))

    output = visrec_import("--interactions", write_csv(tmp_path / "i.csv", header, [row, row]))

    assert "Interactions: 1 created, 1 skipped" in output
    assert Interaction.objects.count() == 2


def test_column_options_and_a_json_mapping_file(tmp_path):
    (tmp_path / "pic.jpg").write_bytes(make_image())
    products_csv = write_csv(
        tmp_path / "p.csv", ["code", "name", "label", "photo", "cost"], [["007", "", "Spy kit", "pic.jpg", "9.99"]]
    )
    inter_csv = write_csv(tmp_path / "i.csv", ["customer", "code", "when"], [["c9", "007", "2021-03-04 10:00:00"]])
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({"interactions": {"user": "customer", "timestamp": "when"}, "defaults": {"stock": 3}})
    )

    output = visrec_import(
        *("--products", products_csv, "--interactions", inter_csv, "--mapping", mapping),
        *("--column", "sku=code", "--column", "title=name", "--column", "title=label", "--column", "price=cost"),
        *("--column", "image=photo"),
    )

    assert "Products: 1 created" in output and "Interactions: 1 created" in output
    product = Product.objects.get(sku="007")
    assert (product.title, product.price, product.stock, product.attributes) == ("Spy kit", Decimal("9.99"), 3, {})
    assert product.visrec_images.get().status == "pending"
    assert Interaction.objects.get().created_at == datetime(2021, 3, 4, 10, tzinfo=UTC)


def test_a_mapped_column_missing_from_the_file_is_an_error(tmp_path):
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "title"], [["A", "a"]])

    with pytest.raises(CommandError, match="the products file has no column 'name' \\(mapped to 'title'\\)"):
        visrec_import("--products", products_csv, "--column", "title=name")
    with pytest.raises(CommandError, match="unknown field 'colour'"):
        visrec_import("--products", products_csv, "--column", "colour=title")
    assert not Product.objects.exists()


def test_hm_preset_on_a_tiny_hm_shaped_file(tmp_path):
    header = ["item_id", "image_path", "title", "category", "product_code", "product_type_name", "colour_group_name"]
    header += ["detail_desc"]
    rows = [
        ["0108775015", "images/0108775015.jpg", "", "", "", "", "", ""],
        ["0111565001", "images/0111565001.jpg", "20 den Stockings", "Tights", "111565", "Tights", "Black", "Nylon"],
        ["0200000001", "images/0108775015.jpg", "", "", "", "Sweater", "Grey", ""],
    ]
    items = write_csv(tmp_path / "items.csv", header, rows)
    (tmp_path / "images").mkdir()
    for i, sku in enumerate(["0108775015", "0111565001"]):
        (tmp_path / "images" / f"{sku}.jpg").write_bytes(make_image(color=(40 * i, 90, 90)))
    inter = write_csv(
        tmp_path / "interactions.csv",
        ["user_id", "item_id", "value", "timestamp", "price", "sales_channel_id"],
        [["f00d" * 16, "0111565001", "1", "2019-01-02", "0.0169", "2"]],
    )

    output = visrec_import("--preset", "hm", "--products", items, "--images", tmp_path, "--interactions", inter)

    assert "Products: 3 created, 0 updated, 0 skipped, 0 failed" in output
    plain, tights, sweater = (Product.objects.get(sku=s) for s in ("0108775015", "0111565001", "0200000001"))
    assert (plain.title, plain.category.name, plain.stock, plain.price) == ("Item 0108775015", "Uncategorised", 100, 0)
    assert (tights.title, tights.category.name, tights.description) == ("20 den Stockings", "Tights", "Nylon")
    assert tights.attributes == {"product_code": "111565", "colour_group_name": "Black"}
    assert (sweater.title, sweater.category.name) == ("Grey Sweater", "Sweater")
    interaction = Interaction.objects.get()
    assert (interaction.product, interaction.kind, interaction.user.username) == (
        tights,
        "purchase",
        "ext-" + "f00d" * 16,
    )


def test_embed_flag_queues_the_new_images(shop_files, monkeypatch):
    queued: list[list[int]] = []
    monkeypatch.setattr("recommendations.tasks.enqueue_embedding", lambda ids: queued.append(list(ids)))
    products_csv, root = shop_files

    output = visrec_import("--products", products_csv, "--images", root, "--embed")

    assert "Queued 3 new image(s) for embedding." in output
    # visrec's own image ids (its ImageState rows), not the shop's ProductImage keys
    assert sorted(queued[0]) == sorted(ImageState.objects.values_list("pk", flat=True))
    assert ImageState.objects.count() == ProductImage.objects.count() == 3


def test_a_sku_repeated_in_one_batch_is_applied_in_file_order(tmp_path):
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "title"], [["D", "first"], ["D", "second"], ["E", "e"]])

    output = visrec_import("--products", products_csv)

    assert "Products: 2 created, 1 updated, 0 skipped, 0 failed" in output
    assert Product.objects.get(sku="D").title == "second"


def test_invalid_product_values_fail_their_row_only(tmp_path):
    rows = [["", "no sku", ""], ["P-1", "bad price", "abc"], ["P-2", "negative", "-1"], ["P-3", "fine", "3.456"]]
    products_csv = write_csv(tmp_path / "p.csv", ["sku", "title", "price"], rows)

    output = visrec_import("--products", products_csv)

    assert "Products: 1 created, 0 updated, 0 skipped, 3 failed" in output
    assert "p.csv row 2: sku is empty" in output
    assert "p.csv row 3 (sku P-1): price 'abc' is not a number" in output
    assert "p.csv row 4 (sku P-2): price '-1' must be between 0" in output
    assert Product.objects.get().price == Decimal("3.46")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-09-20", datetime(2018, 9, 20, tzinfo=UTC)),
        ("2020-01-02T03:04:05Z", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2020-01-02 03:04:05-05:00", datetime(2020, 1, 2, 8, 4, 5, tzinfo=UTC)),
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
        ("1600000000.5", datetime(2020, 9, 13, 12, 26, 40, 500000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text, expected):
    assert importers.parse_timestamp(text) == expected


def test_external_usernames_fit_the_username_field():
    assert importers.external_username("abc-1") == "ext-abc-1"
    long_name = importers.external_username("x" * 400)
    odd_name = importers.external_username("jane doe/1")
    assert (
        len(long_name) <= 150
        and long_name.startswith("ext-xxx")
        and long_name != importers.external_username("x" * 401)
    )
    assert odd_name.startswith("ext-jane_doe_1-") and len(odd_name) <= 150


def test_first_rows_of_the_real_hm_dataset(tmp_path):
    if not (HM_DIR / "items.csv").exists():
        pytest.skip(f"the hm dataset is not at {HM_DIR} (CI keeps it beside the clone)")
    with (HM_DIR / "items.csv").open(newline="") as f:
        reader = csv.reader(f)
        header, rows = next(reader), [row for _, row in zip(range(200), reader, strict=False)]
    items = write_csv(tmp_path / "items.csv", header, rows)
    skus = {row[0] for row in rows}
    with (HM_DIR / "interactions.csv").open(newline="") as f:
        reader = csv.reader(f)
        inter_header, purchases = next(reader), [row for row in reader if row[1] in skus]
    inter = write_csv(tmp_path / "interactions.csv", inter_header, purchases)

    output = visrec_import("--preset", "hm", "--products", items, "--images", HM_DIR, "--interactions", inter)

    assert "Products: 200 created, 0 updated, 0 skipped, 0 failed" in output
    assert "Images: 200 stored (0 replacing an earlier one), 0 unchanged, 0 failed" in output
    assert f"Interactions: {len(purchases)} created, 0 skipped (already imported), 0 failed" in output
    assert Product.objects.filter(sku=rows[0][0]).exists() and rows[0][0].startswith("0")
    assert ProductImage.objects.filter(width=225, height=338).count() == 200
    assert ImageState.objects.filter(status="pending").count() == 200
