"""Task runs in the admin: each run's live progress and report.

Importing products is the shop's job: the run list links to the adapter's
``import_url`` when it has one (the bundled catalogue's page is ``catalog.admin_import``).
URL names (``admin`` namespace): ``visrec_taskrun_json`` (``<run pk>``: the run's progress as
JSON, polled by ``static/visrec/admin/taskrun.js``), ``visrec_taskrun_report``
(``<run pk>``: the CSV of failed rows, staff with ``view_taskrun`` only). Uploads and
reports live under ``MEDIA_ROOT/visrec/private/`` and ``visrec/reports/``, which the
media view never serves.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from ..conf import get_adapter
from ..models import TaskRun
from .dashboard import run_json


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
            path("<int:pk>/progress.json", wrap(self.progress_view), name="visrec_taskrun_json"),
            path("<int:pk>/report.csv", wrap(self.report_view), name="visrec_taskrun_report"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"progress_url": reverse("admin:visrec_taskrun_json", args=[object_id]), **(extra_context or {})}
        run = TaskRun.objects.filter(pk=object_id, kind=TaskRun.REPLAY).first() if object_id.isdigit() else None
        if run is not None:  # a what-if: its table once done, the page reloads to show it
            extra.update(reload_when_done=True, whatif=run.result if run.status == TaskRun.DONE else None)
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request, extra_context=None):
        import_url = get_adapter().import_url(request)
        extra = {"import_url": import_url, **(extra_context or {})}
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
