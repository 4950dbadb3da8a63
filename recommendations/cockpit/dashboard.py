"""The recommendation dashboard and the model-version and experiment admins.

URL names (all under the ``admin`` namespace) for the admin index links:
``visrec_dashboard`` (the dashboard page), ``visrec_dashboard_tasks`` (JSON of recent
task runs, polled by ``static/visrec/admin/dashboard.js``), ``visrec_activate_version``
(POST, ``<version pk>``), ``visrec_reembed`` and ``visrec_retrain`` (POST),
``visrec_experiment_start`` / ``visrec_experiment_end`` (POST, ``<experiment pk>``).

Every view checks the model permission it needs server-side (403 otherwise) and writes
what it did to the admin log (:func:`recommendations.audit.log_change`).
"""

from __future__ import annotations

import copy
import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from .. import experiments
from ..audit import ADDITION, log_change
from ..conf import visrec_settings
from ..models import Experiment, ModelVersion, TaskRun
from . import charts, online_metrics, taskruns

#: Offline metrics shown side by side (those a version has; the training metric first).
METRICS = ("recall@12", "recall@50", "ndcg@12", "ndcg@50", "map@12", "cold_recall@50", "coverage@12")
RECENT_RUNS = 10

method_post = method_decorator(require_POST)


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(f"recommendations.{perm}"):
        raise PermissionDenied(f"you need the {perm} permission")


# -- model versions ------------------------------------------------------------------------


def metric_names(versions) -> list[str]:
    first = str(visrec_settings.TRAIN_METRIC)
    names = [first] + [m for m in METRICS if m != first]
    return [m for m in names if any(isinstance(v.metrics.get(m), int | float) for v in versions)]


def version_chart(versions: list[ModelVersion], metric: str):
    ordered = sorted(versions, key=lambda v: v.pk)
    values = [v.metrics.get(metric) if isinstance(v.metrics.get(metric), int | float) else None for v in ordered]
    return charts.line_chart(f"{metric} across model versions", [f"v{v.pk}" for v in ordered], {metric: values})


def activate_version(request: HttpRequest, version: ModelVersion) -> str:
    """Activate ``version`` (atomic), log it as activation or roll-back; returns the message."""
    from ..serving import forget_active
    from ..training import activate

    current = ModelVersion.objects.active()
    if current is not None and current.pk == version.pk:
        return f"{version} is already active."
    verb = "Rolled back to" if current is not None and version.pk < current.pk else "Activated"
    with transaction.atomic():
        activate(version)
        message = f"{verb} {version.kind} v{version.pk}" + (f" (was v{current.pk})" if current else "")
        log_change(request.user, version, message)
    forget_active()
    return message + "."


def online_section(title: str, what: str, daily: online_metrics.Daily) -> dict:
    """The window totals and daily charts of impressions, clicks, CTR and conversions per ``what``."""
    labels = [d.strftime("%m-%d") for d in daily.days]

    def chart(name: str, metric: str, **kwargs):
        return charts.line_chart(f"{name} per {what}, daily", labels, daily.series(metric), **kwargs)

    return {
        "title": title,
        "totals": daily.totals(),
        "charts": [
            chart("Impressions", "impressions"),
            chart("Clicks", "clicks"),
            chart("CTR", "ctr", fmt=charts.percent),
            chart("Conversions", "conversions"),
        ],
    }


# -- task runs -----------------------------------------------------------------------------


def run_json(run: TaskRun) -> dict:
    return {
        "id": run.pk,
        "kind": run.get_kind_display(),
        "status": run.status,
        "done": run.done,
        "total": run.total,
        "progress": round(run.progress, 4),
        "message": run.message,
        "trigger": run.params.get("trigger", ""),
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def recent_runs() -> list[TaskRun]:
    return list(TaskRun.objects.filter(kind__in=[TaskRun.EMBED, TaskRun.TRAIN])[:RECENT_RUNS])


def start_run(request: HttpRequest, kind: str, params: dict, send) -> TaskRun:
    """Create a queued TaskRun, log it, and call ``send(run_pk)`` once the transaction commits.

    The run comes back as it stands after sending: "failed" with the reason when the
    task queue could not be reached (:func:`taskruns.send`).
    """
    with transaction.atomic():
        run = taskruns.create(kind, user=request.user, params=params)
        log_change(request.user, run, f"Started {run.get_kind_display().lower()} (run #{run.pk})", ADDITION)
        transaction.on_commit(lambda: taskruns.send(run.pk, send))
    run.refresh_from_db(fields=["status", "message"])
    return run


def report_start(model_admin, request: HttpRequest, run: TaskRun, what: str) -> None:
    """Tell the owner that ``what`` started as ``run``, or why it could not start."""
    if run.status == TaskRun.FAILED:
        model_admin.message_user(request, f"{what} could not start (run #{run.pk}): {run.message}.", messages.ERROR)
    else:
        model_admin.message_user(request, f"{what} started (run #{run.pk}).", messages.SUCCESS)


# -- experiments ---------------------------------------------------------------------------


def arm_rows(experiment: Experiment) -> dict:
    """Per-arm counts with Wilson intervals, and the z-tests of CTR and conversion with verdicts."""
    labels = [experiments.label(experiment, arm) for arm in (experiments.CONTROL, experiments.TREATMENT)]
    counts = online_metrics.per_arm(labels, since=experiment.started_at)
    rows = []
    for arm, label in zip((experiments.CONTROL, experiments.TREATMENT), labels, strict=True):
        c = counts[label]
        rows.append(
            {
                "arm": arm,
                "label": label,
                "serves": _serves(experiment, arm),
                "counts": c,
                "ctr_ci": experiments.wilson(c.clicks, c.impressions),
                "conversion_ci": experiments.wilson(c.conversions, c.impressions),
            }
        )
    control, treatment = counts[labels[0]], counts[labels[1]]
    tests = {}
    for name, attr in (("CTR", "clicks"), ("conversion rate", "conversions")):
        k1, k2 = getattr(control, attr), getattr(treatment, attr)
        test = experiments.two_proportion_z(k1, control.impressions, k2, treatment.impressions)
        tests[name] = {
            "z": test[0] if test else None,
            "p": test[1] if test else None,
            "verdict": experiments.verdict(name, k1, control.impressions, k2, treatment.impressions),
        }
    return {"experiment": experiment, "arms": rows, "tests": tests}


def _serves(experiment: Experiment, arm: str) -> str:
    version = experiments.arm_version(experiment, arm)
    if version is not None:
        return f"{version.kind} v{version.pk}"
    return json.dumps(experiments.arm_settings(experiment, arm), sort_keys=True)


# -- the admins ----------------------------------------------------------------------------


class KeepActiveAdminMixin:
    """The delete pages list the active version as protected (no confirm button), saying why."""

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        active = [obj for obj in objs if obj.is_active]
        reasons = [f"{obj}: the active version serves recommendations; activate another one first" for obj in active]
        return deleted, counts, perms_needed, [*protected, *reasons]


@admin.register(ModelVersion)
class ModelVersionAdmin(KeepActiveAdminMixin, admin.ModelAdmin):
    """Model versions (read-only: versions are made by training) and the dashboard's URLs."""

    list_display = ["__str__", "kind", "headline", "is_active", "created_at", "activated_at"]
    list_filter = ["kind", "is_active"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="training metric")
    def headline(self, obj: ModelVersion):
        value = obj.metrics.get(visrec_settings.TRAIN_METRIC)
        return f"{value:.4f}" if isinstance(value, int | float) else "–"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name="visrec_dashboard"),
            path("dashboard/tasks.json", wrap(self.tasks_view), name="visrec_dashboard_tasks"),
            path("dashboard/reembed/", wrap(self.reembed_view), name="visrec_reembed"),
            path("dashboard/retrain/", wrap(self.retrain_view), name="visrec_retrain"),
            path("<int:pk>/activate/", wrap(self.activate_view), name="visrec_activate_version"),
            *super().get_urls(),
        ]

    def _dashboard_allowed(self, request) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied("you need the view_modelversion permission")

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        self._dashboard_allowed(request)
        versions = list(ModelVersion.objects.order_by("-pk")[:30])
        names = metric_names(versions)
        by_widget, by_version = online_metrics.daily("widget"), online_metrics.daily("model_version_id")
        running = Experiment.objects.filter(status=Experiment.RUNNING).select_related(
            "control_version", "treatment_version"
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Recommendation dashboard",
            "opts": self.model._meta,
            "versions": [{"version": v, "metrics": [v.metrics.get(m) for m in names]} for v in versions],
            "metric_names": names,
            "version_chart": version_chart(versions, names[0]) if names else None,
            "online": [
                online_section("Per widget", "widget", by_widget),
                online_section("Per model version", "version", by_version),
            ],
            "experiments": [arm_rows(e) for e in running],
            "runs": recent_runs(),
            "can_activate": request.user.has_perm("recommendations.change_modelversion"),
            "can_run": request.user.has_perm("recommendations.add_taskrun"),
            "days": len(by_widget.days),
        }
        return TemplateResponse(request, "admin/visrec/dashboard.html", context)

    def tasks_view(self, request: HttpRequest) -> JsonResponse:
        self._dashboard_allowed(request)
        return JsonResponse({"runs": [run_json(r) for r in recent_runs()]})

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:visrec_dashboard"))

    @method_post
    def activate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        _require(request, "change_modelversion")
        version = get_object_or_404(ModelVersion, pk=pk)
        self.message_user(request, activate_version(request, version), messages.SUCCESS)
        return self._back()

    @method_post
    def reembed_view(self, request: HttpRequest) -> HttpResponse:
        from ..tasks import reembed_missing_and_failed

        _require(request, "add_taskrun")
        run = start_run(request, TaskRun.EMBED, {"images": "missing+failed"}, reembed_missing_and_failed.delay)
        report_start(self, request, run, "Re-embedding missing and failed images")
        return self._back()

    @method_post
    def retrain_view(self, request: HttpRequest) -> HttpResponse:
        from ..tasks import train_models

        _require(request, "add_taskrun")
        run = start_run(request, TaskRun.TRAIN, {}, lambda pk: train_models.delay(run_id=pk))
        report_start(self, request, run, "Retraining")
        return self._back()


class ExperimentForm(forms.ModelForm):
    """Two model versions or two blend settings (JSON), validated by :func:`experiments.validate`."""

    widget = forms.ChoiceField(
        choices=[("", "Similar items and for you"), *((w, w) for w in experiments.WIDGETS)], required=False
    )

    class Meta:
        model = Experiment
        fields = [
            "name",
            "widget",
            "control_version",
            "treatment_version",
            "control_settings",
            "treatment_settings",
            "treatment_percent",
            "salt",
        ]
        help_texts = {
            "control_settings": 'e.g. {"SIMILAR_BLEND": {"visual": 0.7, "model": 0.3}}; leave {} for version arms.',
            "treatment_settings": 'e.g. {"FOR_YOU_BLEND": {"model": 0.8, "session": 0.2}}.',
        }

    def clean(self):
        data = super().clean()
        if self.errors or self.instance.status != Experiment.DRAFT:  # a started experiment's arms are read-only
            return data
        candidate = copy.copy(self.instance)
        for name, value in data.items():
            setattr(candidate, name, value)
        try:
            experiments.validate(candidate)
        except experiments.ExperimentError as e:
            raise forms.ValidationError(str(e)) from e
        return data


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """Create experiments (editable while draft), start them, end them by promoting the winner."""

    form = ExperimentForm
    list_display = ["name", "widget", "status", "treatment_percent", "winner", "started_at", "ended_at"]
    list_filter = ["status"]
    change_form_template = "admin/recommendations/experiment/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        locked = ["status", "winner", "started_at", "ended_at", "created_by"]
        if obj is not None and obj.status != Experiment.DRAFT:
            return [*ExperimentForm.Meta.fields, *locked]
        return locked

    def save_model(self, request, obj: Experiment, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/start/", wrap(self.start_view), name="visrec_experiment_start"),
            path("<int:pk>/end/", wrap(self.end_view), name="visrec_experiment_end"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if obj is not None and obj.status != Experiment.DRAFT:
            extra["arm_stats"] = arm_rows(obj)
        extra["can_steer"] = request.user.has_perm("recommendations.change_experiment")
        return super().change_view(request, object_id, form_url, extra)

    def _back(self, experiment: Experiment) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:recommendations_experiment_change", args=[experiment.pk]))

    @method_post
    def start_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        _require(request, "change_experiment")
        experiment = get_object_or_404(Experiment, pk=pk)
        try:
            with transaction.atomic():
                experiment = experiments.start(experiment)
                log_change(request.user, experiment, f"Started experiment {experiment.name}")
        except experiments.ExperimentError as e:
            self.message_user(request, f"Cannot start: {e}", messages.ERROR)
        else:
            self.message_user(request, f"Experiment {experiment.name} is running.", messages.SUCCESS)
        return self._back(experiment)

    @method_post
    def end_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        from ..serving import forget_active

        _require(request, "change_experiment")
        experiment = get_object_or_404(Experiment, pk=pk)
        winner = request.POST.get("winner", "")
        version = (
            experiments.arm_version(experiment, winner)
            if winner in (experiments.CONTROL, experiments.TREATMENT)
            else None
        )
        if version is not None:
            _require(request, "change_modelversion")  # promoting a version activates it
        try:
            with transaction.atomic():
                experiment = experiments.end(experiment, winner)
                log_change(request.user, experiment, _ended_message(experiment, winner))
                if version is not None:
                    log_change(request.user, version, f"Activated v{version.pk}: winner of {experiment.name}")
        except experiments.ExperimentError as e:
            self.message_user(request, f"Cannot end: {e}", messages.ERROR)
            return self._back(experiment)
        forget_active()
        self.message_user(request, _ended_message(experiment, winner) + ".", messages.SUCCESS)
        return self._back(experiment)


def _ended_message(experiment: Experiment, winner: str) -> str:
    if not winner:
        return f"Ended experiment {experiment.name} without promoting an arm"
    return f"Ended experiment {experiment.name}; promoted the {winner}: {_serves(experiment, winner)}"
