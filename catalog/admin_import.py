"""The bulk import page (a products CSV and a ZIP of images): the bundled catalogue's own admin page.

URL name ``admin:visrec_import`` (registered by ``catalog.admin.ProductAdmin``; needs
``recommendations.add_taskrun`` and ``catalog.add_product``). The run it starts is a
visrec ``TaskRun``, so its progress and report show in the cockpit's run list.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from recommendations.cockpit.dashboard import start_run
from recommendations.models import TaskRun

from . import importers
from .tasks import MAX_ZIP_TOTAL_BYTES, PRIVATE_PREFIX

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


def import_view(request: HttpRequest) -> HttpResponse:
    """The upload form; a valid POST starts an import run (``catalog.tasks.import_products``)."""
    if not request.user.has_perms(IMPORT_PERMS):
        raise PermissionDenied("you need the add_taskrun and catalog.add_product permissions")
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        run = _start_import(request, form.cleaned_data)
        messages.success(request, f"Import started (run #{run.pk}).")
        return HttpResponseRedirect(reverse("admin:recommendations_taskrun_change", args=[run.pk]))
    context = {
        **admin.site.each_context(request),
        "title": "Bulk import products and images",
        "opts": TaskRun._meta,
        "form": form,
        "presets": importers.PRESETS,
    }
    return TemplateResponse(request, "admin/catalog/import.html", context, status=400 if form.errors else 200)

def _start_import(request: HttpRequest, data: dict) -> TaskRun:
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
