"""The deterministic demo catalogue: drawing, simulation, database build and command."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from catalog.demo import builder
from catalog.demo.drawing import BACKGROUNDS, COLOURS, PATTERNS, SIZE, TYPES, ImageSpec, draw_product
from catalog.demo.simulation import REFERENCE_END, plan_catalog, simulate_shoppers
from catalog.models import Category, Product, ProductImage
from catalog.services import sha256_of
from recommendations.models import Interaction
from tests.fixtures.catalog import state_of


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def build(products: int = 40, users: int = 10, seed: int = 3) -> builder.DemoResult:
    return builder.build_demo(builder.DemoParams(products=products, users=users, seed=seed))


def snapshot() -> dict:
    """Everything a build wrote, independent of primary keys and wall-clock times."""
    products = list(builder.demo_products().order_by("sku").values_list("sku", "title", "price", "stock", "is_active"))
    shas = list(
        ProductImage.objects.filter(product__sku__startswith="DEMO-")
        .order_by("product__sku")
        .values_list("sha256", flat=True)
    )
    interactions = sorted(
        Interaction.objects.filter(user__username__startswith="shopper-").values_list(
            "user__username", "product__sku", "kind", "created_at", "session_key"
        )
    )
    return {"products": products, "shas": shas, "interactions": interactions}


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- drawing (no database) -----------------------------------------------------------


def test_draw_product_is_a_400px_jpeg():
    image = decode(draw_product(ImageSpec("mug", "teal", "dots", "sky")))
    assert image.format == "JPEG"
    assert image.size == (SIZE, SIZE) == (400, 400)
    assert image.mode == "RGB"


@pytest.mark.parametrize("product_type", TYPES)
def test_solid_products_show_their_colour_at_the_centre(product_type):
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], dtype=float) * 0.9  # the centre is lit at about 90 %
    for name in names:
        spec = ImageSpec(product_type, name, "solid", "white", dx=12, dy=-8, flip=True)
        pixel = np.asarray(decode(draw_product(spec)), dtype=float)[200 - 8, 200 + 12]
        nearest = names[int(np.argmin(((palette - pixel) ** 2).sum(axis=1)))]
        assert nearest == name, (product_type, name, pixel)


def test_patterns_and_backgrounds_change_the_picture():
    base = ImageSpec("t-shirt", "red", "solid", "white")
    pictures = {draw_product(base)}
    pictures |= {draw_product(ImageSpec("t-shirt", "red", p, "white")) for p in PATTERNS[1:]}
    pictures |= {draw_product(ImageSpec("t-shirt", "red", "solid", b)) for b in list(BACKGROUNDS)[1:]}
    assert len(pictures) == len(PATTERNS) + len(BACKGROUNDS) - 1
    striped = np.asarray(decode(draw_product(ImageSpec("t-shirt", "red", "stripes", "white"))), dtype=float)
    solid = np.asarray(decode(draw_product(base)), dtype=float)
    body_green = (slice(180, 300), slice(150, 250), 1)  # red fabric, light stripes: green varies
    assert solid[body_green].std() < 5
    assert striped[body_green].std() > 40


def test_pool_drawing_gives_the_same_bytes_as_in_process():
    specs = [plan.image for plan in plan_catalog(12, seed=11)]
    assert builder.draw_images(specs, workers=2) == builder.draw_images(specs, workers=1)


# --- planning and simulation (no database) -------------------------------------------


def test_plan_catalog_is_deterministic_per_seed():
    first, again, other = plan_catalog(60, 5), plan_catalog(60, 5), plan_catalog(60, 6)
    assert first == again
    assert [p.title for p in first] != [p.title for p in other]
    assert all(p.sku.startswith("DEMO-") for p in first) and len({p.sku for p in first}) == 60


def test_plan_catalog_prices_follow_type_ranges():
    plans = plan_catalog(600, 1)
    prices = {t: [p.price for p in plans if p.image.type == t] for t in TYPES}
    assert all(isinstance(p.price, Decimal) and p.price == p.price.quantize(Decimal("0.01")) for p in plans)
    assert max(prices["mug"]) < min(prices["sneaker"])
    assert min(p.price for p in plans) > 0
    assert {p.title.split()[0] for p in plans} >= {"Red", "Blue", "Black"}


def test_simulation_events_lie_in_the_90_days_before_the_reference_end():
    simulation = simulate_shoppers(plan_catalog(50, 2), 12, 2)
    times = [e.at for e in simulation.events]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)
    assert REFERENCE_END - timedelta(days=90) <= times[0] and times[-1] < REFERENCE_END


# --- building into the database ------------------------------------------------------


@pytest.mark.django_db
def test_build_is_deterministic_for_a_seed_and_differs_across_seeds(var_dir):
    build(seed=3)
    first = snapshot()
    builder.delete_demo()
    build(seed=3)
    again = snapshot()
    builder.delete_demo()
    build(seed=4)
    other = snapshot()

    assert first == again
    assert len(first["products"]) == 40 and len(first["shas"]) == 40 and first["interactions"]
    assert first["shas"] != other["shas"]
    assert [p[1] for p in first["products"]] != [p[1] for p in other["products"]]
    assert first["interactions"] != other["interactions"]


@pytest.mark.django_db
def test_build_stores_pending_400px_jpegs_matching_their_checksums(var_dir):
    build()
    images = list(ProductImage.objects.select_related("product"))
    assert len(images) == 40
    for image in images:
        with image.file.open("rb") as fh:
            data = fh.read()
        picture = decode(data)
        assert (picture.format, picture.size) == ("JPEG", (400, 400))
        assert image.sha256 == sha256_of(data)
        assert image.file.name.startswith(f"products/{image.sha256[:2]}/")
        assert (image.width, image.height, image.is_primary, state_of(image).status) == (400, 400, True, "pending")
    means = {tuple(np.asarray(decode(im.file.open("rb").read())).reshape(-1, 3).mean(0).round(-1)) for im in images}
    assert len(means) > 15


@pytest.mark.django_db
def test_build_sets_attributes_categories_and_stock_states(var_dir):
    build(products=80)
    products = list(builder.demo_products().select_related("category"))
    for product in products:
        assert set(product.attributes) == {"type", "colour", "pattern", "background"}
        assert product.attributes["type"] in product.title
        assert (
            product.category.products.filter(attributes__type=product.attributes["type"]).count()
            == product.category.products.count()
        )
    assert len({p.attributes["type"] for p in products}) >= 5
    assert len({p.attributes["colour"] for p in products}) >= 8
    assert len({p.attributes["pattern"] for p in products}) == len(PATTERNS)
    assert Category.objects.filter(name__in=["T-shirts", "Mugs", "Sneakers", "Bags", "Posters"]).count() == 5
    assert sum(not p.is_active for p in products) >= 1
    assert sum(p.stock == 0 for p in products) >= 1
    assert sum(p.is_active and p.stock > 0 for p in products) > 0.85 * len(products)


@pytest.mark.django_db
def test_interactions_follow_a_funnel(var_dir):
    result = build(products=60, users=20)
    counts = Counter(Interaction.objects.values_list("kind", flat=True))
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["view"] > 2 * counts["click"]
    assert sum(counts.values()) == result.interactions
    assert not Interaction.objects.filter(product__is_active=False).exists()
    assert not Interaction.objects.filter(product__stock=0, kind__in=["add_to_cart", "purchase"]).exists()
    end = REFERENCE_END
    assert not Interaction.objects.exclude(created_at__gte=end - timedelta(days=90), created_at__lt=end).exists()


@pytest.mark.django_db
def test_shoppers_prefer_their_saved_tastes(var_dir):
    result = build(products=120, users=30, seed=8)
    tastes = json.loads((var_dir / "demo" / "tastes.json").read_text())
    assert tastes == result.tastes
    assert tastes["seed"] == 8 and sorted(tastes["users"]) == [f"shopper-{i:04d}" for i in range(1, 31)]
    active = list(builder.demo_products().filter(is_active=True).values_list("attributes", flat=True))
    rows = Interaction.objects.values_list("user__username", "product__attributes")
    for key, attribute in [("types", "type"), ("colours", "colour")]:
        lifts = []
        for username, taste in tastes["users"].items():
            seen = [attrs[attribute] in taste[key] for user, attrs in rows if user == username]
            chance = np.mean([attrs[attribute] in taste[key] for attrs in active])
            if seen and chance > 0:
                lifts.append(np.mean(seen) / chance)
        assert np.median(lifts) > 1.6, (key, np.median(lifts))


@pytest.mark.django_db
def test_shoppers_are_users_without_a_usable_password(var_dir):
    build(users=5)
    users = list(builder.demo_users().order_by("username"))
    assert [u.username for u in users] == [f"shopper-000{i}" for i in range(1, 6)]
    assert not any(u.has_usable_password() for u in users)


# --- the management command ----------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("visrec_demo", *args, stdout=out, verbosity=0)
    return out.getvalue()


@pytest.mark.django_db
def test_command_builds_then_skips_a_loaded_catalogue(var_dir):
    first = run("--products", "30", "--users", "8", "--seed", "5")
    pks = set(builder.demo_products().values_list("pk", flat=True))
    interactions = Interaction.objects.count()

    second = run("--products", "30", "--users", "8", "--seed", "5")

    assert "30 products, 30 images, 8 users" in first
    assert "already loaded" in second
    assert set(builder.demo_products().values_list("pk", flat=True)) == pks
    assert Interaction.objects.count() == interactions
    assert json.loads((var_dir / "demo" / "params.json").read_text())["seed"] == 5


@pytest.mark.django_db
def test_command_refuses_other_parameters_without_force(var_dir):
    run("--products", "20", "--users", "4", "--seed", "5")
    with pytest.raises(CommandError, match="--force"):
        run("--products", "20", "--users", "4", "--seed", "6")
    assert builder.demo_products().count() == 20


@pytest.mark.django_db
def test_command_force_rebuilds(var_dir):
    run("--products", "20", "--users", "4", "--seed", "5")
    before = snapshot()
    old_pks = set(builder.demo_products().values_list("pk", flat=True))

    out = run("--products", "20", "--users", "4", "--seed", "5", "--force")

    assert "Deleted" in out and "20 products" in out
    assert not old_pks & set(builder.demo_products().values_list("pk", flat=True))
    assert snapshot() == before
    run("--products", "25", "--users", "6", "--seed", "9", "--force")
    assert builder.demo_products().count() == 25 and builder.demo_users().count() == 6


@pytest.mark.django_db
def test_command_rebuilds_when_the_marker_is_stale(var_dir):
    run("--products", "20", "--users", "4", "--seed", "5")
    builder.demo_products().delete()
    builder.demo_users().delete()

    out = run("--products", "20", "--users", "4", "--seed", "5")

    assert "already loaded" not in out
    assert Product.objects.filter(sku__startswith="DEMO-").count() == 20
