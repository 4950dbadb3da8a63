"""The owner's what-if (:mod:`recommendations.replay`) in the admin: a quick look inline, or the whole window.

Asked from the rule form (``merch.RuleAdmin.preview_view``), the experiment form's blend
settings and model versions (``dashboard.ExperimentAdmin.whatif_view``) and the model
activation (``dashboard.ModelVersionAdmin.whatif_view``). ``whatif=quick`` renders the
replay of at most ``WHATIF_QUICK_SAMPLE`` lists; ``whatif=full`` starts a
:class:`~recommendations.models.TaskRun` and sends the owner to its live progress page,
which shows the same table when the run is done.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..conf import visrec_settings
from ..models import TaskRun
from ..replay import Candidate, ReplayError, what_if

QUICK, FULL = "quick", "full"


def asked(request: HttpRequest) -> str:
    """``quick``, ``full`` or ``""``: the what-if the request asks for."""
    source = request.POST if request.method == "POST" else request.GET
    value = source.get("whatif", "")
    return value if value in (QUICK, FULL) else ""


def start_full(request: HttpRequest, candidate: Candidate) -> HttpResponseRedirect:
    """Start the background replay of ``candidate`` (``WHATIF_SAMPLE`` lists) and go to its progress page."""
    from ..tasks import whatif_replay
    from .dashboard import start_run

    if not request.user.has_perm("recommendations.add_taskrun"):
        raise PermissionDenied("you need the add_taskrun permission")
    params = {"candidate": candidate.to_params(), "sample": int(visrec_settings.WHATIF_SAMPLE), "what": candidate.label}
    run = start_run(request, TaskRun.REPLAY, params, whatif_replay.delay)
    return HttpResponseRedirect(reverse("admin:recommendations_taskrun_change", args=[run.pk]))


def respond(request: HttpRequest, **what) -> dict | HttpResponseRedirect:
    """The asked what-if of ``Candidate(**what)``: a context to merge (``whatif`` or ``whatif_problem``), or a redirect.

    The redirect goes to the background run's progress page (``whatif=full``).
    """
    try:
        candidate = Candidate(**what)
    except ReplayError as e:
        return {"whatif_problem": str(e)}
    if asked(request) == FULL:
        return start_full(request, candidate)
    return {"whatif": what_if(candidate)}


def page(model_admin, request: HttpRequest, title: str, what: dict, problem: str = "", **extra) -> HttpResponse:
    """The what-if page (``admin/visrec/whatif.html``) of ``Candidate(**what)`` (none: ``problem``), or the redirect."""
    found = respond(request, **what) if what else {"whatif_problem": problem}
    if isinstance(found, HttpResponse):
        return found
    context = {
        **model_admin.admin_site.each_context(request),
        **found,
        "title": title,
        "opts": model_admin.model._meta,
        **extra,
    }
    status = 400 if "whatif_problem" in found else 200
    return TemplateResponse(request, "admin/visrec/whatif.html", context, status=status)


def buttons(request: HttpRequest, url: str) -> dict:
    """Context of ``admin/visrec/whatif_buttons.html``: the what-if buttons posting the form to ``url``."""
    return {
        "whatif_url": url,
        "whatif_days": visrec_settings.WHATIF_DAYS,
        "whatif_quick": visrec_settings.WHATIF_QUICK_SAMPLE,
        "whatif_full": visrec_settings.WHATIF_SAMPLE,
        "can_run": request.user.has_perm("recommendations.add_taskrun"),
    }
