"""Permissions and audit across the cockpit: every action is refused server-side without its
model permission (nothing changes, nothing is logged) and written to the admin log with it.

A staff user who may *view* everything but change nothing is the adversary: buttons are
hidden from them, and posting the forms by hand changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from recommendations import training
from recommendations.models import Experiment, ImageState, ModelVersion, Rule, SimilarityJudgement, TaskRun

pytestmark = pytest.mark.django_db

VIEW = (
    "catalog.view_product",
    "catalog.view_productimage",
    "recommendations.view_modelversion",
    "recommendations.view_experiment",
    "recommendations.view_rule",
    "recommendations.view_similarityjudgement",
    "recommendations.view_taskrun",
)


@pytest.fixture
def world(product_with_image):
    a, b = product_with_image(title="A"), product_with_image(title="B")
    ImageState.objects.filter(product=b).update(status=ImageState.Status.FAILED, error="broken")
    v1 = ModelVersion.objects.create(kind="popularity", artifact="a.npz")
    v2 = ModelVersion.objects.create(kind="als", artifact="b.npz")
    training.activate(v1)
    experiment = Experiment.objects.create(name="ab", control_version=v1, treatment_version=v2)
    return {"a": a, "b": b, "v1": v1, "v2": v2, "experiment": experiment}


@dataclass(frozen=True)
class Action:
    """One cockpit action: the permissions it needs, how to post it, and whether it took effect."""

    perms: tuple[str, ...]
    post: callable
    happened: callable
    refused_status: int = 403


def _import_files() -> dict:
    return {"products": SimpleUploadedFile("p.csv", b"sku,title\nZ1,Zed\n")}


ACTIONS = {
    "activate a version": Action(
        ("recommendations.change_modelversion",),
        lambda c, w: c.post(reverse("admin:visrec_activate_version", args=[w["v2"].pk])),
        lambda w: ModelVersion.objects.active().pk == w["v2"].pk,
    ),
    "retrain": Action(
        ("recommendations.add_taskrun",),
        lambda c, w: c.post(reverse("admin:visrec_retrain")),
        lambda w: TaskRun.objects.filter(kind=TaskRun.TRAIN).exists(),
    ),
    "re-embed from the dashboard": Action(
        ("recommendations.add_taskrun",),
        lambda c, w: c.post(reverse("admin:visrec_reembed")),
        lambda w: TaskRun.objects.filter(kind=TaskRun.EMBED).exists(),
    ),
    "retry failed images (health page)": Action(
        ("recommendations.add_taskrun",),
        lambda c, w: c.post(reverse("admin:visrec_health_retry")),
        lambda w: not ImageState.objects.filter(status=ImageState.Status.FAILED).exists(),
    ),
    "re-embed action on products": Action(
        ("recommendations.add_taskrun",),
        lambda c, w: c.post(
            reverse("admin:catalog_product_changelist"), {"action": "retry_failed", "_selected_action": [w["b"].pk]}
        ),
        lambda w: not ImageState.objects.filter(status=ImageState.Status.FAILED).exists(),
        refused_status=200,  # the admin answers "no action selected": the action is not offered
    ),
    "judge a neighbour": Action(
        ("recommendations.add_similarityjudgement",),
        lambda c, w: c.post(
            reverse("admin:catalog_product_judge", args=[w["a"].pk]), {"neighbour": w["b"].pk, "verdict": "not_similar"}
        ),
        lambda w: SimilarityJudgement.objects.exists(),
    ),
    "add a rule": Action(
        ("recommendations.add_rule",),
        lambda c, w: c.post(
            reverse("admin:recommendations_rule_add"),
            {"kind": "block", "product": w["b"].pk, "multiplier": "1", "position": "0", "is_active": "on"},
        ),
        lambda w: Rule.objects.exists(),
    ),
    "start an experiment": Action(
        ("recommendations.change_experiment",),
        lambda c, w: c.post(reverse("admin:visrec_experiment_start", args=[w["experiment"].pk])),
        lambda w: Experiment.objects.get(pk=w["experiment"].pk).status == Experiment.RUNNING,
    ),
    "bulk import": Action(
        ("recommendations.add_taskrun", "catalog.add_product"),
        lambda c, w: c.post(reverse("admin:visrec_import"), _import_files()),
        lambda w: TaskRun.objects.filter(kind=TaskRun.IMPORT).exists(),
    ),
}


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_without_its_permission_is_refused_and_not_logged(name, world, client, staff_user):
    action = ACTIONS[name]
    client.force_login(staff_user(*VIEW, username="viewer"))
    before = LogEntry.objects.count()
    response = action.post(client, world)
    assert response.status_code == action.refused_status
    assert not action.happened(world)
    assert LogEntry.objects.count() == before


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_with_its_permission_happens_and_is_logged(name, world, client, staff_user):
    action = ACTIONS[name]
    user = staff_user(*VIEW, *action.perms, username="owner")
    client.force_login(user)
    response = action.post(client, world)
    assert response.status_code == 302, getattr(response, "context_data", {}).get("errors")
    assert action.happened(world)
    assert LogEntry.objects.filter(user=user).exists()


@pytest.mark.parametrize("name", ACTIONS)
def test_no_one_but_staff_reaches_an_action(name, world, client, django_user_model):
    client.force_login(django_user_model.objects.create_user("shopper", password="pw"))
    response = ACTIONS[name].post(client, world)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not ACTIONS[name].happened(world)


@pytest.mark.parametrize(
    "url",
    [
        lambda w: reverse("admin:visrec_retrain"),
        lambda w: reverse("admin:visrec_reembed"),
        lambda w: reverse("admin:visrec_activate_version", args=[w["v2"].pk]),
        lambda w: reverse("admin:visrec_experiment_start", args=[w["experiment"].pk]),
        lambda w: reverse("admin:visrec_health_retry"),
        lambda w: reverse("admin:catalog_product_judge", args=[w["a"].pk]),
    ],
)
def test_actions_refuse_get(url, world, client, admin_user):
    client.force_login(admin_user)
    assert client.get(url(world)).status_code == 405
    assert not TaskRun.objects.exists() and ModelVersion.objects.active().pk == world["v1"].pk


def test_a_viewer_sees_no_action_buttons(world, client, staff_user):
    client.force_login(staff_user(*VIEW, username="viewer"))
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:visrec_dashboard") in index and reverse("admin:visrec_import") not in index
    dashboard = client.get(reverse("admin:visrec_dashboard")).content.decode()
    assert reverse("admin:visrec_retrain") not in dashboard and reverse("admin:visrec_reembed") not in dashboard
    assert reverse("admin:visrec_activate_version", args=[world["v2"].pk]) not in dashboard
    product = client.get(reverse("admin:catalog_product_change", args=[world["a"].pk])).content.decode()
    assert reverse("admin:catalog_product_judge", args=[world["a"].pk]) not in product
    experiment = client.get(reverse("admin:recommendations_experiment_change", args=[world["experiment"].pk]))
    assert reverse("admin:visrec_experiment_start", args=[world["experiment"].pk]) not in experiment.content.decode()
    runs = client.get(reverse("admin:recommendations_taskrun_changelist")).content.decode()
    assert reverse("admin:visrec_import") not in runs
    products = client.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert 'value="retry_failed"' not in products and 'value="reembed"' not in products


def test_the_owner_sees_the_buttons(world, client, staff_user):
    perms = {p for action in ACTIONS.values() for p in action.perms}
    client.force_login(staff_user(*VIEW, *perms, username="owner"))
    index = client.get(reverse("admin:index")).content.decode()
    for name in ("visrec_dashboard", "visrec_health", "visrec_import", "recommendations_rule_changelist"):
        assert reverse(f"admin:{name}") in index
    dashboard = client.get(reverse("admin:visrec_dashboard")).content.decode()
    assert reverse("admin:visrec_retrain") in dashboard
    product = client.get(reverse("admin:catalog_product_change", args=[world["a"].pk])).content.decode()
    assert reverse("admin:catalog_product_judge", args=[world["a"].pk]) in product
    products = client.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert 'value="retry_failed"' in products
