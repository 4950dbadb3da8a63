"""Bulk import gaps: huge CSV fields, clashing ZIP paths, formulas in the report, create-only imports."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.importers import ColumnMapping, ImportReport, ProductImporter, failure_writer
from catalog.importers.products import REFUSED_UPDATE
from catalog.importers.reading import MAX_FIELD_CHARS
from catalog.models import Product
from catalog.tasks import extract_images
from recommendations.models import TaskRun
from tests.cockpit.test_import import PERMS, _start, _zip
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db


def _report_rows(client, run: TaskRun) -> list[dict]:
    response = client.get(reverse("admin:visrec_taskrun_report", args=[run.pk]))
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def _csv(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("products.csv", text.encode(), content_type="text/csv")


# -- a field over 128 KiB ---------------------------------------------------------------------


def test_a_field_over_128_kib_fails_only_its_row(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    huge = "x" * (MAX_FIELD_CHARS + 1)
    text = (
        "sku,title,description\n"
        "A1,First,short\n"
        f"A2,Huge,{huge}\n"  # row 3
        f'A3,Quoted,"{huge[:200_000]}\nover two lines"\n'  # row 4 (one record on two lines)
        "A4,Last,short\n"  # row 5
    )
    _start(client, {"products": _csv(text)}, django_capture_on_commit_callbacks)
    run = TaskRun.objects.get(kind=TaskRun.IMPORT)
    assert run.status == TaskRun.DONE, run.message
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["A1", "A4"]
    reasons = {(r["row"], r["sku"]): r["reason"] for r in _report_rows(client, run)}
    assert reasons == {
        ("3", "A2"): f"column 'description' is longer than {MAX_FIELD_CHARS} characters",
        ("4", "A3"): f"column 'description' is longer than {MAX_FIELD_CHARS} characters",
    }


def test_a_field_too_long_even_to_read_fails_only_its_row(tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(f"sku,title\nA1,ok\nA2,{'y' * (17 * 1024 * 1024)}\nA3,ok\n")
    report = ImportReport()
    ProductImporter(tmp_path, report).run(path, ColumnMapping())
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["A1", "A3"]
    [failure] = report.failures
    assert failure.row == 3 and failure.reason.startswith("the row cannot be read: field larger than field limit")


# -- clashing paths in the images ZIP ---------------------------------------------------------


def test_zip_entries_whose_paths_clash_fail_alone(tmp_path):
    archive = tmp_path / "images.zip"
    archive.write_bytes(
        _zip(
            {
                "a.jpg": make_image(color=(200, 0, 0)),
                "a.jpg/b.jpg": make_image(),  # a folder where a file was unpacked
                "c.jpg/d.jpg": make_image(),
                "c.jpg": make_image(),  # a file where a folder was unpacked
                "/abs.jpg": make_image(),
                "../up.jpg": make_image(),
                "ok.jpg": make_image(color=(0, 200, 0)),
            }
        )
    )
    with zipfile.ZipFile(archive, "a") as bundle:
        with pytest.warns(UserWarning, match="Duplicate name"):
            bundle.writestr("ok.jpg", b"a second entry with the same name")
    target = tmp_path / "out"
    target.mkdir()
    report = ImportReport()
    assert extract_images(archive, target, report) == 3
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "a.jpg", "c.jpg/d.jpg", "ok.jpg",
    ]  # fmt: skip
    assert (target / "ok.jpg").read_bytes().startswith(b"\xff\xd8")  # the first ok.jpg, not the second
    reasons = [f.reason for f in report.failures]
    assert reasons == [
        "a.jpg/b.jpg: refused: its folder a.jpg is a file of the archive",
        "c.jpg: refused: an earlier entry uses this path as a folder",
        "/abs.jpg: refused: absolute path",
        "../up.jpg: refused: path goes outside the archive ('..')",
        "ok.jpg: refused: a second entry with the same path",
    ]
    assert report.images.failed == 5


def test_an_import_with_clashing_zip_paths_runs_to_the_end(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    images = _zip({"a.jpg": make_image(), "a.jpg/b.jpg": make_image()})
    uploads = {
        "products": _csv("sku,title,image\nA1,Shirt,a.jpg\nA2,Mug,a.jpg/b.jpg\n"),
        "images": SimpleUploadedFile("images.zip", images, content_type="application/zip"),
    }
    _start(client, uploads, django_capture_on_commit_callbacks)
    run = TaskRun.objects.get(kind=TaskRun.IMPORT)
    assert run.status == TaskRun.DONE, run.message
    assert Product.objects.get(sku="A1").images.get().file
    assert any(r["reason"].startswith("a.jpg/b.jpg: refused") for r in _report_rows(client, run))


# -- formulas in the failure report -----------------------------------------------------------


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_the_failure_report_defuses_formulas(value):
    stream = io.StringIO()
    report = ImportReport(sink=failure_writer(stream))
    report.fail(value, 7, value, value)
    [row] = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert row == {"file": f"'{value}", "row": "7", "sku": f"'{value}", "reason": f"'{value}"}


def test_the_admin_report_of_a_hostile_file_opens_as_text(client, staff_user, django_capture_on_commit_callbacks):
    client.force_login(staff_user(*PERMS))
    hostile = '"=cmd|\' /C calc\'!A0",Title,abc\n'
    _start(client, {"products": _csv(f"sku,title,price\n{hostile}")}, django_capture_on_commit_callbacks)
    [row] = _report_rows(client, TaskRun.objects.get(kind=TaskRun.IMPORT))
    assert row["sku"] == "'=cmd|' /C calc'!A0"


# -- an import that may only create -----------------------------------------------------------


def test_without_change_product_an_import_only_creates(client, staff_user, django_capture_on_commit_callbacks):
    Product.objects.create(sku="A1", title="Old title", price=5, stock=1)
    client.force_login(staff_user(*PERMS))
    assert b"You may only create products" in client.get(reverse("admin:visrec_import")).content
    _start(client, {"products": _csv("sku,title\nA1,Hacked title\nB1,New\n")}, django_capture_on_commit_callbacks)
    run = TaskRun.objects.get(kind=TaskRun.IMPORT)
    assert run.status == TaskRun.DONE and run.result["products_created"] == 1
    assert run.result["products_updated"] == 0 and run.result["products_failed"] == 1
    assert Product.objects.get(sku="A1").title == "Old title" and Product.objects.filter(sku="B1").exists()
    assert _report_rows(client, run) == [{"file": "products.csv", "row": "2", "sku": "A1", "reason": REFUSED_UPDATE}]


def test_with_change_product_an_import_updates(client, staff_user, django_capture_on_commit_callbacks):
    Product.objects.create(sku="A1", title="Old title", price=5, stock=1)
    client.force_login(staff_user(*PERMS, "catalog.change_product"))
    assert b"You may only create products" not in client.get(reverse("admin:visrec_import")).content
    _start(client, {"products": _csv("sku,title\nA1,New title\n")}, django_capture_on_commit_callbacks)
    assert TaskRun.objects.get(kind=TaskRun.IMPORT).result["products_updated"] == 1
    assert Product.objects.get(sku="A1").title == "New title"
