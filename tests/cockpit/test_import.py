"""Bulk import from the admin: upload, background run with progress, report of failed rows, hostile ZIPs."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.importers import ImportReport
from catalog.models import Product, ProductImage
from catalog.tasks import ZipLimits, extract_images, import_products, safe_member_path
from recommendations.models import ImageState, TaskRun
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db

PERMS = ("recommendations.add_taskrun", "catalog.add_product", "recommendations.view_taskrun")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


CSV = (
    "sku,title,category,price,stock,image\n"
    "A1,Red circle,Mugs,9.50,3,photos/red.jpg\n"  # row 2: fine
    "A2,Blue square,Mugs,abc,3,photos/blue.png\n"  # row 3: bad price
    ",No sku,Mugs,1,1,\n"  # row 4: empty sku
    "A3,Text file,Mugs,1,1,photos/fake.jpg\n"  # row 5: not an image
    "A4,Escape,Mugs,1,1,../etc/passwd\n"  # row 6: path escapes the folder
    "A5,Green,Shirts,2,5,photos/green.png\n"  # row 7: fine
)


@pytest.fixture
def uploads():
    images = _zip(
        {
            "photos/red.jpg": make_image(color=(200, 30, 30)),
            "photos/blue.png": make_image(color=(30, 30, 200), fmt="PNG"),
            "photos/green.png": make_image(color=(20, 160, 40), fmt="PNG", shape="square"),
            "photos/fake.jpg": b"this is not a picture",
            "../outside.jpg": make_image(),
            "notes/readme.txt": b"hello",
        }
    )
    return {
        "products": SimpleUploadedFile("products.csv", CSV.encode(), content_type="text/csv"),
        "images": SimpleUploadedFile("images.zip", images, content_type="application/zip"),
    }


def _start(client, uploads, capture, **extra):
    with capture(execute=True):
        return client.post(reverse("admin:visrec_import"), {**uploads, **extra})


def test_import_from_the_admin_runs_in_the_background_reports_failed_rows_and_embeds(
    client, staff_user, uploads, django_capture_on_commit_callbacks
):
    # given a shop owner (staff, not superuser) with the import permissions
    owner = staff_user(*PERMS)
    client.force_login(owner)
    listing = client.get(reverse("admin:recommendations_taskrun_changelist"))
    assert reverse("admin:visrec_import").encode() in listing.content
    assert client.get(reverse("admin:visrec_import")).status_code == 200
    # when they upload the CSV and the ZIP
    response = _start(client, uploads, django_capture_on_commit_callbacks)
    # then a run was made and (eagerly) finished; good rows imported, bad ones reported
    run = TaskRun.objects.get(kind=TaskRun.IMPORT)
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:recommendations_taskrun_change", args=[run.pk]
    )
    assert run.status == TaskRun.DONE, run.message
    assert run.done == run.total == 6
    assert set(Product.objects.values_list("sku", flat=True)) == {"A1", "A3", "A4", "A5"}
    assert run.result["products_created"] == 4 and run.result["products_failed"] == 2
    ready = ImageState.objects.filter(status=ImageState.Status.READY)
    assert set(ready.values_list("product__sku", flat=True)) == {"A1", "A5"}  # embedded by the pipeline
    assert ImageState.objects.get(product__sku="A3").status == ImageState.Status.FAILED

    report = client.get(reverse("admin:visrec_taskrun_report", args=[run.pk]))
    assert report.status_code == 200 and report["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(report.streaming_content).decode())))
    by_row = {(r["file"], r["row"]): r["reason"] for r in rows}
    assert "price 'abc' is not a number" in by_row[("products.csv", "3")]
    assert by_row[("products.csv", "4")] == "sku is empty"
    assert "image rejected: photos/fake.jpg" in by_row[("products.csv", "5")]
    assert "escapes the images folder" in by_row[("products.csv", "6")]
    zip_reasons = [r["reason"] for r in rows if r["file"] == "images.zip"]
    assert any(r.startswith("../outside.jpg: refused") for r in zip_reasons)
    assert any(r.startswith("notes/readme.txt: not an image") for r in zip_reasons)

    progress = client.get(reverse("admin:visrec_taskrun_json", args=[run.pk])).json()
    assert progress["status"] == "done" and progress["progress"] == 1.0
    assert progress["report_url"] == reverse("admin:visrec_taskrun_report", args=[run.pk])
    page = client.get(reverse("admin:recommendations_taskrun_change", args=[run.pk]))
    assert b"Download the report of failed rows" in page.content and b"visrec/admin/taskrun.js" in page.content

    messages = list(LogEntry.objects.filter(object_id=str(run.pk)).values_list("change_message", flat=True))
    assert any(m.startswith("Started bulk import") for m in messages)
    assert any(m.startswith(f"Import #{run.pk} finished: 4 created") for m in messages)
    # the uploads are deleted once imported; the report stays private
    assert not ProductImage.objects.filter(file__startswith="visrec/private").exists()
    assert client.get(f"/media/{run.report.name}").status_code == 404


def test_uploads_and_reports_are_never_served_as_media(client, settings):
    settings.SERVE_MEDIA = True
    for name in ("visrec/private/imports/x/products.csv", "visrec/reports/r.csv", "visrec/./private//a.csv"):
        assert client.get(f"/media/{name}").status_code == 404


def test_a_column_mapping_and_preset_from_the_form(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    products = SimpleUploadedFile("items.csv", b"item_id,name\n0042,Teapot\n")
    _start(client, {"products": products}, django_capture_on_commit_callbacks, columns="sku=item_id\ntitle=name")
    assert Product.objects.get(sku="0042").title == "Teapot"
    run = TaskRun.objects.get()
    assert run.status == TaskRun.DONE and not run.report


def test_bad_mapping_or_file_types_are_form_errors(client, staff_user):
    client.force_login(staff_user(*PERMS))
    url = reverse("admin:visrec_import")
    bad_column = client.post(url, {"products": SimpleUploadedFile("p.csv", b"sku\n1\n"), "columns": "nonsense"})
    assert bad_column.status_code == 400 and b"--column expects target=source" in bad_column.content
    wrong_type = client.post(url, {"products": SimpleUploadedFile("p.xlsx", b"x"), "images": ""})
    assert wrong_type.status_code == 400 and b"Expected a .csv" in wrong_type.content
    assert not TaskRun.objects.exists()


def test_an_unusable_file_fails_the_run_with_its_reason(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    uploads = {
        "products": SimpleUploadedFile("p.csv", b"sku,title\nA,B\n"),
        "images": SimpleUploadedFile("images.zip", b"not a zip at all"),
    }
    _start(client, uploads, django_capture_on_commit_callbacks)
    run = TaskRun.objects.get()
    assert run.status == TaskRun.FAILED and "not a ZIP archive" in run.message
    assert not Product.objects.exists()
    assert LogEntry.objects.filter(change_message__startswith=f"Import #{run.pk} failed").exists()


def test_a_csv_that_is_not_utf8_fails_the_run_with_advice(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    latin1 = "sku,title\nA1,Caf\u00e9\n".encode("latin-1")
    _start(client, {"products": SimpleUploadedFile("p.csv", latin1)}, django_capture_on_commit_callbacks)
    run = TaskRun.objects.get()
    assert run.status == TaskRun.FAILED and "not UTF-8" in run.message


def test_progress_is_written_as_rows_go(client, staff_user, django_capture_on_commit_callbacks, monkeypatch):
    from catalog import tasks

    seen = []
    real = tasks.taskruns.progress

    def spy(run_id, done, total=None, message=None):
        real(run_id, done, total, message)
        run = TaskRun.objects.get(pk=run_id)
        seen.append((run.status, run.done, run.total))

    monkeypatch.setattr(tasks, "PROGRESS_EVERY_S", 0)
    monkeypatch.setattr(tasks.taskruns, "progress", spy)
    client.force_login(staff_user(*PERMS))
    rows = "".join(f"S{i},Item {i}\n" for i in range(5))
    _start(
        client,
        {"products": SimpleUploadedFile("p.csv", f"sku,title\n{rows}".encode())},
        django_capture_on_commit_callbacks,
    )
    assert [done for _, done, _ in seen] == [0, 1, 2, 3, 4, 5, 5]
    assert {status for status, _, _ in seen} == {TaskRun.RUNNING} and {t for _, _, t in seen} == {5}
    assert TaskRun.objects.get().status == TaskRun.DONE


def test_a_running_run_cannot_be_deleted(client, staff_user):
    run = TaskRun.objects.create(kind=TaskRun.IMPORT, status=TaskRun.RUNNING)
    client.force_login(staff_user("recommendations.view_taskrun", "recommendations.delete_taskrun"))
    assert (
        client.post(reverse("admin:recommendations_taskrun_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    )
    TaskRun.objects.filter(pk=run.pk).update(status=TaskRun.DONE)
    client.post(reverse("admin:recommendations_taskrun_delete", args=[run.pk]), {"post": "yes"})
    assert not TaskRun.objects.exists()


def test_a_missing_sku_column_fails_the_run(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    _start(client, {"products": SimpleUploadedFile("p.csv", b"name\nX\n")}, django_capture_on_commit_callbacks)
    run = TaskRun.objects.get()
    assert run.status == TaskRun.FAILED and "no 'sku' column" in run.message


@pytest.mark.parametrize(
    "perms", [("recommendations.add_taskrun",), ("catalog.add_product",), ("recommendations.view_taskrun",)]
)
def test_import_needs_both_permissions(client, staff_user, perms, uploads):
    client.force_login(staff_user(*perms))
    url = reverse("admin:visrec_import")
    assert client.get(url).status_code == 403
    assert client.post(url, uploads).status_code == 403
    assert not TaskRun.objects.exists()


def test_progress_and_report_need_view_permission(client, staff_user, django_user_model):
    run = TaskRun.objects.create(kind=TaskRun.IMPORT, status=TaskRun.RUNNING, done=3, total=10, message="m")
    run.report.save("r.csv", io.BytesIO(b"file,row,sku,reason\n"), save=True)
    json_url = reverse("admin:visrec_taskrun_json", args=[run.pk])
    report_url = reverse("admin:visrec_taskrun_report", args=[run.pk])
    client.force_login(staff_user("catalog.add_product", username="clerk"))
    assert client.get(json_url).status_code == 403 and client.get(report_url).status_code == 403
    shopper = django_user_model.objects.create_user("shopper", password="pw")
    client.force_login(shopper)
    assert client.get(report_url).status_code == 302  # to the admin login
    client.force_login(staff_user("recommendations.view_taskrun", username="viewer"))
    assert client.get(json_url).json()["progress"] == 0.3
    assert client.get(report_url).status_code == 200


def test_a_queued_run_only_runs_once():
    run = TaskRun.objects.create(kind=TaskRun.IMPORT, status=TaskRun.DONE, params={"products": "x"})
    assert import_products.apply(args=(run.pk,)).get() is None
    assert import_products.apply(args=(run.pk + 1,)).get() is None


# -- the ZIP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a/b.jpg", True),
        ("./a.jpg", True),
        ("../a.jpg", False),
        ("a/../../b.jpg", False),
        ("/etc/a.jpg", False),
        ("C:/a.jpg", False),
        ("..\\a.jpg", False),
    ],
)
def test_safe_member_path(name, ok):
    if ok:
        assert ".." not in safe_member_path(name).parts
    else:
        with pytest.raises(ValueError):
            safe_member_path(name)


def test_zip_traversal_and_links_never_write_outside(tmp_path):
    archive = tmp_path / "in.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("../../escaped.jpg", make_image())
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (0o120777 << 16) | 0
        bundle.writestr(link, "/etc/passwd")
        bundle.writestr("ok.jpg", make_image())
    archive.write_bytes(buffer.getvalue())
    target = tmp_path / "out" / "images"
    target.mkdir(parents=True)
    report = ImportReport()
    assert extract_images(archive, target, report) == 1
    assert [p.name for p in target.rglob("*") if p.is_file()] == ["ok.jpg"]
    assert not list(tmp_path.rglob("escaped.jpg"))
    reasons = [f.reason for f in report.failures]
    assert any("symbolic link" in r for r in reasons) and any("'..'" in r for r in reasons)


def test_zip_bomb_limits_stop_at_the_budget(tmp_path):
    archive = tmp_path / "bomb.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for i in range(6):
            bundle.writestr(f"{i}.jpg", b"\0" * 40_000)  # compresses to almost nothing
    archive.write_bytes(buffer.getvalue())
    target = tmp_path / "out"
    target.mkdir()

    per_file = ImportReport()
    assert extract_images(archive, target, per_file, ZipLimits(file_bytes=10_000)) == 0
    assert per_file.images.failed == 6 and "larger than 10000 bytes" in per_file.failures[0].reason

    total = ImportReport()
    assert extract_images(archive, target, total, ZipLimits(total_bytes=100_000)) == 2
    assert "unpacks to more than 100000 bytes" in total.failures[-1].reason
    assert sum(p.stat().st_size for p in target.iterdir()) <= 100_000

    count = ImportReport()
    assert extract_images(archive, target, count, ZipLimits(entries=3)) == 3
    assert "more than 3 entries" in count.failures[-1].reason
