"""Task runs in the admin and the bulk import page (a products CSV and a ZIP of images).

URL names (``admin`` namespace): ``visrec_import`` (the upload form: ``add_taskrun`` and
``catalog.add_product``), ``visrec_taskrun_json`` (``<run pk>``: the run's progress as
JSON, polled by ``static/visrec/admin/taskrun.js``), ``visrec_taskrun_report``
(``<run pk>``: the CSV of failed rows, staff with ``view_taskrun`` only). Uploads and
reports live under ``MEDIA_ROOT/visrec/private/`` and ``visrec/reports/``, which the
media view never serves.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from catalog import importers
from catalog.tasks import MAX_ZIP_TOTAL_BYTES, PRIVATE_PREFIX

from .admin_dashboard import run_json, start_run
from .models import TaskRun

IMPORT_PERMS = ("recommendations.add_taskrun", "catalog.add_product")
MAX_CSV_BYTES = 1024**3


class ImportForm(forms.Form):
    """The import page: files, an optional preset and ``target=source`` column lines."""

    products = forms.FileField(label="Products CSV", help_text="UTF-8 CSV with a header row (see the README).")
    images = forms.FileField(
        label="Images ZIP", required=False, help_text="Image paths in the CSV are relative to the ZIP's root."
    )
    preset = forms.ChoiceField(
        choices=[("", "none")] + [(name, name) for name in sorted(importers.PRESETS)], required=False
    )
    columns = forms.CharField(
        label="Column mapping",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 40, "placeholder": "sku=item_id\ntitle={colour} {type}"}),
        help_text="One target=source per line, as the command's --column option.",
    )

    def clean_products(self) -> UploadedFile:
        return _checked(self.cleaned_data["products"], (".csv", ".txt"), MAX_CSV_BYTES)

    def clean_images(self) -> UploadedFile | None:
        upload = self.cleaned_data.get("images")
        return _checked(upload, (".zip",), MAX_ZIP_TOTAL_BYTES) if upload else None

    def clean_columns(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["columns"].splitlines() if line.strip()]
        try:
            importers.ColumnMapping.from_options(lines)
        except importers.ImportConfigError as e:
            raise forms.ValidationError(str(e)) from e
        return lines


def _checked(upload: UploadedFile, suffixes: tuple[str, ...], limit: int) -> UploadedFile:
    if not upload.name.lower().endswith(suffixes):
        raise forms.ValidationError(f"Expected a {' or '.join(suffixes)} file.")
    if upload.size > limit:
        raise forms.ValidationError(f"The file is larger than {limit // 1024**2} MiB.")
    return upload


def store_upload(upload: UploadedFile, folder: str, name: str) -> str:
    """Save ``upload`` in the private media folder; returns its storage name."""
    return default_storage.save(f"{PRIVATE_PREFIX}imports/{folder}/{name}", upload)


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    """Background runs (read-only), the import page and each run's live progress and report."""

    list_display = ["__str__", "kind", "status", "progress_display", "message", "created_by", "created_at"]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in TaskRun._meta.fields if f.name != "report"] + ["report_link"]
    exclude = ["report"]
    change_form_template = "admin/visrec/import_taskrun.html"
    change_list_template = "admin/visrec/import_taskrun_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        busy = obj is not None and obj.status in (TaskRun.QUEUED, TaskRun.RUNNING)
        return not busy and super().has_delete_permission(request, obj)

    @admin.display(description="progress")
    def progress_display(self, obj: TaskRun) -> str:
        return f"{obj.done} / {obj.total}" if obj.total else "–"

    @admin.display(description="report of failed rows")
    def report_link(self, obj: TaskRun) -> str:
        if not obj.report:
            return "–"
        return format_html('<a href="{}">Download CSV</a>', reverse("admin:visrec_taskrun_report", args=[obj.pk]))

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="visrec_import"),
            path("<int:pk>/progress.json", wrap(self.progress_view), name="visrec_taskrun_json"),
            path("<int:pk>/report.csv", wrap(self.report_view), name="visrec_taskrun_report"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"progress_url": reverse("admin:visrec_taskrun_json", args=[object_id]), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request, extra_context=None):
        extra = {"can_import": request.user.has_perms(IMPORT_PERMS), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def _viewable(self, request: HttpRequest, pk: int) -> TaskRun:
        if not self.has_view_permission(request):
            raise PermissionDenied("you need the view_taskrun permission")
        return get_object_or_404(TaskRun, pk=pk)

    def progress_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        run = self._viewable(request, pk)
        report = reverse("admin:visrec_taskrun_report", args=[run.pk]) if run.report else None
        return JsonResponse({**run_json(run), "report_url": report, "result": run.result})

    def report_view(self, request: HttpRequest, pk: int) -> FileResponse:
        run = self._viewable(request, pk)
        if not run.report:
            raise Http404("this run has no report")
        try:
            stream = run.report.open("rb")
        except OSError as e:
            raise Http404("the report file is gone") from e
        return FileResponse(
            stream, as_attachment=True, filename=f"import-{run.pk}-failures.csv", content_type="text/csv"
        )

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perms(IMPORT_PERMS):
            raise PermissionDenied("you need the add_taskrun and catalog.add_product permissions")
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            run = self._start_import(request, form.cleaned_data)
            self.message_user(request, f"Import started (run #{run.pk}).", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:recommendations_taskrun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Bulk import products and images",
            "opts": self.model._meta,
            "form": form,
            "presets": importers.PRESETS,
        }
        return TemplateResponse(request, "admin/visrec/import.html", context, status=400 if form.errors else 200)

    def _start_import(self, request: HttpRequest, data: dict) -> TaskRun:
        from catalog.tasks import import_products

        folder = uuid.uuid4().hex
        params = {
            "products": store_upload(data["products"], folder, "products.csv"),
            "images": store_upload(data["images"], folder, "images.zip") if data["images"] else "",
            "products_name": data["products"].name[:200],
            "images_name": data["images"].name[:200] if data["images"] else "",
            "preset": data["preset"],
            "columns": data["columns"],
        }
        return start_run(request, TaskRun.IMPORT, params, import_products.delay)
