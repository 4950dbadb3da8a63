"""The shop owner's cockpit in a real browser: the issue's acceptance story, with screenshots.

A shop owner (staff, not a superuser, with the cockpit's model permissions) logs in,
uploads a product photo and watches it become embedded, sees the similar-items
preview, marks a neighbour "not similar" and sees it gone from the shop page, pins a
product and sees it first, starts an experiment, two shoppers browse and click, and the
dashboard shows impressions and clicks per arm. A second test imports a CSV and a ZIP.

Screenshots go to a temporary folder, or to ``$VISREC_SCREENSHOTS`` (e.g.
``VISREC_SCREENSHOTS=docs/screenshots``, to refresh the README's pictures).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Q

from catalog.models import Product
from recommendations import experiments
from recommendations.models import ImageState, Rule, SimilarityJudgement
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db(transaction=True)

OWNER_PERMS = {
    "catalog": [
        "view_product",
        "change_product",
        "add_product",
        "view_productimage",
        "add_productimage",
        "change_productimage",
        "view_category",
    ],
    "recommendations": [
        "view_rule",
        "add_rule",
        "change_rule",
        "view_similarityjudgement",
        "add_similarityjudgement",
        "view_experiment",
        "add_experiment",
        "change_experiment",
        "view_modelversion",
        "change_modelversion",
        "add_taskrun",
        "view_taskrun",
    ],
}
SIMILAR = '[data-visrec-widget="similar-items"] [data-product-id]'


@pytest.fixture
def owner(django_user_model):
    """A shop owner: staff with the cockpit's permissions, not a superuser."""
    user = django_user_model.objects.create_user("owner", password="owner-pw", is_staff=True)
    perms = Q()
    for app, codenames in OWNER_PERMS.items():
        perms |= Q(content_type__app_label=app, codename__in=codenames)
    user.user_permissions.set(Permission.objects.filter(perms))
    return user


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("VISREC_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page, username: str = "owner", password: str = "owner-pw") -> None:
    page.goto(f"{page.base_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("heading", name="Shop owner's cockpit").is_visible()


def shop_ids(page, product: Product) -> list[int]:
    page.goto(f"{page.base_url}/product/{product.pk}/")
    return [int(x) for x in page.locator(SIMILAR).evaluate_all("els => els.map(e => e.dataset.productId)")]


def eventually(check, *, seconds: float = 8.0, every: float = 0.5):
    """``check()``'s value once truthy (rules reach every process within seconds), else its last value."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def salt_splitting(*session_keys: str) -> str:
    """An experiment salt that puts the first two shoppers in different arms at 50 %."""
    for n in range(1000):
        arms = {experiments.bucket(f"ab-{n}", f"s{key}") < 50 for key in session_keys}
        if len(arms) == 2:
            return f"ab-{n}"
    raise AssertionError("no salt splits these shoppers")


def session_key(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")


def test_shop_owner_story(new_page, small_catalog, owner, shots, tmp_path):
    anchor, twin, far = small_catalog["anchor"], small_catalog["twin"], small_catalog["other0"]
    newcomer = Product.objects.create(
        sku="NEW-1", title="New red stripes", category=anchor.category, price="12.00", stock=5
    )
    admin = new_page()
    log_in(admin)

    # upload an image for a product and watch it become embedded
    photo = tmp_path / "new-stripes.png"
    photo.write_bytes(make_image(color=(190, 40, 40), shape="stripes", size=(224, 224), fmt="PNG"))
    admin.goto(f"{admin.base_url}/admin/catalog/product/{newcomer.pk}/change/")
    admin.get_by_role("button", name="Add another Product image").click()
    admin.locator('input[name="images-0-file"]').set_input_files(str(photo))
    admin.locator('input[name="images-0-is_primary"]').check()
    with admin.expect_navigation():
        admin.get_by_role("button", name="Save and continue editing").click()
    status = admin.locator("#images-group td.field-status").first

    def embedded() -> bool:
        admin.reload()
        return status.inner_text().strip() == "Ready"

    assert eventually(embedded, seconds=20), status.inner_text()
    assert ImageState.objects.get(product=newcomer).embeddings.exists()

    # its similar-items preview: what shoppers see, with scores
    preview = admin.locator("#similar-items-preview")
    admin.locator("#images-group").evaluate("el => el.scrollIntoView({block: 'start'})")
    neighbours = [
        int(x) for x in preview.locator("tr[data-neighbour]").evaluate_all("rows => rows.map(r => r.dataset.neighbour)")
    ]
    assert neighbours[:2] and {anchor.pk, twin.pk} & set(neighbours[:3])
    admin.screenshot(path=str(shots / "product-admin.png"))

    # mark a neighbour "not similar" and see it gone from the shop page
    shopper = new_page()
    assert twin.pk in shop_ids(shopper, anchor)
    admin.goto(f"{admin.base_url}/admin/catalog/product/{anchor.pk}/change/")
    row = admin.locator(f'#similar-items-preview tr[data-neighbour="{twin.pk}"]')
    with admin.expect_navigation():
        row.get_by_role("button", name="Not similar").click()
    assert admin.get_by_text("marked not similar").is_visible()
    assert SimilarityJudgement.objects.filter(product=anchor, neighbour=twin, verdict="not_similar").exists()
    assert eventually(lambda: twin.pk not in shop_ids(shopper, anchor))

    # pin a product and see it first on the shop page
    assert shop_ids(shopper, anchor)[0] != far.pk
    admin.goto(f"{admin.base_url}/admin/recommendations/rule/add/")
    admin.locator("#id_kind").select_option("pin")
    admin.locator("#id_product").fill(str(far.pk))
    admin.locator("#id_widget").fill("similar-items")
    admin.locator("#id_scope_product").fill(str(anchor.pk))
    with admin.expect_navigation():
        admin.get_by_role("button", name="Save", exact=True).click()
    assert Rule.objects.filter(kind=Rule.PIN, product=far, scope_product=anchor).exists()
    assert eventually(lambda: shop_ids(shopper, anchor)[:1] == [far.pk])
    shopper.screenshot(path=str(shots / "shop-product.png"))

    # start an experiment that splits two shoppers (their sessions exist: they have visited)
    other_shopper = new_page()
    shop_ids(other_shopper, anchor)
    salt = salt_splitting(session_key(shopper), session_key(other_shopper))
    admin.goto(f"{admin.base_url}/admin/recommendations/experiment/add/")
    admin.locator("#id_name").fill("blend-test")
    admin.locator("#id_widget").select_option("similar-items")
    admin.locator("#id_control_settings").fill('{"SIMILAR_BLEND": {"visual": 1.0, "model": 0.0}}')
    admin.locator("#id_treatment_settings").fill('{"SIMILAR_BLEND": {"visual": 0.5, "model": 0.5}}')
    admin.locator("#id_treatment_percent").fill("50")
    admin.locator("#id_salt").fill(salt)
    with admin.expect_navigation():
        admin.get_by_role("button", name="Save and continue editing").click()
    with admin.expect_navigation():
        admin.get_by_role("button", name="Start experiment").click()
    assert admin.get_by_text("Experiment blend-test is running.").is_visible()

    # two shoppers browse and click a recommendation each
    for visitor in (shopper, other_shopper):
        shop_ids(visitor, anchor)
        first = visitor.locator(SIMILAR).first
        target = first.get_attribute("data-product-id")
        with visitor.expect_navigation():
            first.locator("a").click()
        assert visitor.url.endswith(f"/product/{target}/")

    # the dashboard shows impressions and clicks per arm
    admin.goto(f"{admin.base_url}/admin/")
    with admin.expect_navigation():
        admin.get_by_role("link", name="Recommendation dashboard").click()
    for arm in ("control", "treatment"):
        cells = admin.locator(f'tr[data-arm="blend-test:{arm}"] td')
        impressions, clicks = int(cells.nth(2).inner_text()), int(cells.nth(3).inner_text())
        assert impressions >= 1 and clicks == 1, (arm, impressions, clicks)
    admin.locator(".visrec-experiment").first.scroll_into_view_if_needed()
    admin.screenshot(path=str(shots / "dashboard.png"))


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def test_bulk_import_in_the_browser(page, owner, shots, tmp_path):
    products = tmp_path / "products.csv"
    products.write_text("sku,title,price,stock,image\nB1,Blue mug,4.50,9,blue.png\nB2,Broken,abc,1,\n")
    images = tmp_path / "images.zip"
    images.write_bytes(_zip({"blue.png": make_image(color=(30, 30, 200), fmt="PNG"), "../x.png": b"x"}))
    log_in(page)
    with page.expect_navigation():
        page.get_by_role("link", name="Bulk import").click()
    page.get_by_label("Products CSV").set_input_files(str(products))
    page.get_by_label("Images ZIP").set_input_files(str(images))
    with page.expect_navigation():
        page.get_by_role("button", name="Start import").click()
    run = page.locator("#visrec-run")
    assert eventually(lambda: run.get_attribute("data-status") == "done"), run.inner_text()
    assert "1 created" in run.locator(".visrec-message").inner_text()
    page.screenshot(path=str(shots / "import.png"))
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the report of failed rows (CSV)").click()
    report = Path(download.value.path()).read_text()
    assert "price 'abc' is not a number" in report and "../x.png: refused" in report
    assert Product.objects.get(sku="B1").visrec_images.get().status == ImageState.Status.READY


def test_a_run_page_follows_progress_without_reloading(page, owner):
    from recommendations.models import TaskRun

    run = TaskRun.objects.create(kind=TaskRun.IMPORT, status=TaskRun.RUNNING, done=1, total=4, message="row 1")
    log_in(page)
    page.goto(f"{page.base_url}/admin/recommendations/taskrun/{run.pk}/change/")
    box = page.locator("#visrec-run")
    assert box.locator(".visrec-count").inner_text() == "1 / 4"
    page.evaluate("window.visrecMarker = 1")  # gone if the page reloads
    TaskRun.objects.filter(pk=run.pk).update(done=3, message="row 3")
    page.wait_for_function("document.querySelector('#visrec-run .visrec-count').textContent === '3 / 4'")
    TaskRun.objects.filter(pk=run.pk).update(status=TaskRun.DONE, done=4, message="4 created")
    page.wait_for_function("document.querySelector('#visrec-run').dataset.status === 'done'")
    assert (
        box.locator(".visrec-status").inner_text() == "Done"
        and box.locator(".visrec-message").inner_text() == "4 created"
    )
    assert page.evaluate("window.visrecMarker") == 1
