"""The bulk import page (a products CSV and a ZIP of images): the bundled catalogue's own admin page.

URL name ``admin:visrec_import`` (registered by ``catalog.admin.ProductAdmin``; needs
``recommendations.add_taskrun`` and ``catalog.add_product``; updating existing products
also needs ``catalog.change_product``, without it their rows fail as refused). The run it starts is a
visrec ``TaskRun``, so its progress and report show in the cockpit's run list.
"""

from __future__ import annotations

import contextlib
import logging
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
from .tasks import MAX_ZIP_TOTAL_BYTES, PRIVATE_PREFIX, delete_uploads

logger = logging.getLogger(__name__)
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


def store_uploads(data: dict) -> dict[str, str]:
    """Save the form's files in a new private media folder; their storage names (``""``: no images).

    A storage error (a full disk) deletes what was written and is raised.
    """
    folder = f"{PRIVATE_PREFIX}imports/{uuid.uuid4().hex}"
    wanted = {"products": f"{folder}/products.csv", "images": f"{folder}/images.zip" if data["images"] else ""}
    try:
        return {key: default_storage.save(name, data[key]) if name else "" for key, name in wanted.items()}
    except OSError:
        for name in filter(None, wanted.values()):
            with contextlib.suppress(OSError):
                default_storage.delete(name)
        raise


def import_view(request: HttpRequest) -> HttpResponse:
    """The upload form; a valid POST starts an import run (``catalog.tasks.import_products``)."""
    if not request.user.has_perms(IMPORT_PERMS):
        raise PermissionDenied("you need the add_taskrun and catalog.add_product permissions")
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            stored = store_uploads(form.cleaned_data)
        except OSError as e:  # a full disk is the owner's to fix, not a server error
            logger.warning("could not store the import's uploads: %s", e)
            form.add_error(None, f"The files could not be stored on the server ({e.strerror or e}); try again later.")
        else:
            run = _start_import(request, form.cleaned_data, stored)
            if run.status == TaskRun.FAILED:  # the task queue is down: the uploads are not needed
                delete_uploads(run.params)
                messages.error(request, f"The import could not start (run #{run.pk}): {run.message}.")
            else:
                messages.success(request, f"Import started (run #{run.pk}).")
            return HttpResponseRedirect(reverse("admin:recommendations_taskrun_change", args=[run.pk]))
    context = {
        **admin.site.each_context(request),
        "title": "Bulk import products and images",
        "opts": TaskRun._meta,
        "form": form,
        "presets": importers.PRESETS,
        "may_update": request.user.has_perm("catalog.change_product"),
    }
    return TemplateResponse(request, "admin/catalog/import.html", context, status=400 if form.errors else 200)

def _start_import(request: HttpRequest, data: dict, stored: dict[str, str]) -> TaskRun:
    from catalog.tasks import import_products

    params = {
        **stored,
        "products_name": data["products"].name[:200],
        "images_name": data["images"].name[:200] if data["images"] else "",
        "preset": data["preset"],
        "columns": data["columns"],
        # Without catalog.change_product the import only creates: rows of existing SKUs fail as refused.
        "may_update": request.user.has_perm("catalog.change_product"),
    }
    return start_run(request, TaskRun.IMPORT, params, import_products.delay)
