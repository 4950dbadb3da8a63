"""Experiments (A/B): stable assignment, arms in serving and tracking, statistics, admin life cycle."""

from __future__ import annotations

import math

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from recommendations import experiments, serving, tracking, training
from recommendations.cockpit import online_metrics
from recommendations.models import Experiment, Impression, ModelVersion

pytestmark = pytest.mark.django_db

BLEND_A = {"SIMILAR_BLEND": {"visual": 0.7, "model": 0.3}}
BLEND_B = {"SIMILAR_BLEND": {"visual": 0.2, "model": 0.8}}


def running(**fields) -> Experiment:
    fields = {"name": "blend", "control_settings": BLEND_A, "treatment_settings": BLEND_B, **fields}
    return experiments.start(Experiment.objects.create(**fields))


# -- assignment -------------------------------------------------------------------------------


def test_assignment_is_stable_and_splits_close_to_the_percentage():
    running(treatment_percent=30)
    arms = [experiments.assign("similar-items", session_key=f"session-{n}")[1] for n in range(4000)]
    again = [experiments.assign("similar-items", session_key=f"session-{n}")[1] for n in range(4000)]
    assert arms == again
    share = arms.count("treatment") / len(arms)
    assert abs(share - 0.30) < 0.025  # binomial sd at n=4000 is 0.007
    assert set(arms) == {"control", "treatment"}


def test_a_user_keeps_the_arm_across_sessions_and_the_salt_reshuffles(django_user_model):
    experiment = running()
    user = django_user_model.objects.create_user("shopper")
    arm = experiments.assign("for-you", user=user, session_key="a")[1]
    assert all(experiments.assign("for-you", user=user, session_key=s)[1] == arm for s in "bcdefg")
    salted = [experiments.bucket("other-salt", f"s{n}") for n in range(200)]
    named = [experiments.bucket(experiment.name, f"s{n}") for n in range(200)]
    assert salted != named and experiments.bucket("x", "s1") == experiments.bucket("x", "s1")


def test_no_shopper_other_widget_or_no_running_experiment_means_no_arm():
    assert experiments.assign("similar-items", session_key="s") == (None, "")
    running(widget="for-you")
    assert experiments.assign("similar-items", session_key="s") == (None, "")
    assert experiments.assign("for-you") == (None, "")
    assert experiments.assign("for-you", session_key="s")[0].name == "blend"
    assert experiments.assign("recently-viewed", session_key="s") == (None, "")


def test_saving_an_experiment_is_seen_at_once():
    experiment = running()
    assert experiments.snapshot().running[0].pk == experiment.pk
    experiments.end(experiment, "")
    assert experiments.snapshot().running == ()


def test_percent_0_and_100_send_everyone_to_one_arm():
    experiment = running(treatment_percent=0)
    assert {experiments.assign("for-you", session_key=f"s{n}")[1] for n in range(300)} == {"control"}
    Experiment.objects.filter(pk=experiment.pk).update(treatment_percent=100)
    experiments.forget()
    assert {experiments.assign("for-you", session_key=f"s{n}")[1] for n in range(300)} == {"treatment"}


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"treatment_settings": {}}, "two different blend settings"),
        ({"treatment_settings": BLEND_A}, "two different blend settings"),
        ({"treatment_settings": {"SIMILAR_BLEND": {"colour": 1}}}, "unknown source"),
        ({"treatment_settings": {"RULES": {}}}, "unknown setting"),
        ({"treatment_settings": {"SIMILAR_BLEND": {"visual": -1}}}, "number from 0 to 100"),
        ({"name": "x" * 60}, "at most 54 characters"),
        ({"widget": "popular"}, "experiments can change"),
    ],
)
def test_invalid_experiments_are_refused(fields, message):
    experiment = Experiment(**{"name": "e", "control_settings": BLEND_A, "treatment_settings": BLEND_B, **fields})
    with pytest.raises(experiments.ExperimentError, match=message):
        experiments.validate(experiment)


def test_versions_and_settings_cannot_mix_and_versions_must_differ():
    v1 = ModelVersion.objects.create(kind="popularity", artifact="a.npz")
    with pytest.raises(experiments.ExperimentError, match="not both"):
        experiments.validate(Experiment(name="e", control_version=v1, treatment_version=v1, control_settings=BLEND_A))
    with pytest.raises(experiments.ExperimentError, match="two different model versions"):
        experiments.validate(Experiment(name="e", control_version=v1, treatment_version=v1))


def test_only_one_running_experiment_per_widget():
    running(widget="similar-items")
    with pytest.raises(experiments.ExperimentError, match="already runs"):
        running(name="second")
    assert running(name="third", widget="for-you").status == Experiment.RUNNING


# -- serving and tracking -----------------------------------------------------------------------


def _session_in(arm: str, name: str = "blend", percent: int = 50) -> str:
    """A session key that lands in ``arm`` (a session's shopper key is ``"s" + session key``)."""
    treated = arm == "treatment"
    return next(f"k{n}" for n in range(1000) if (experiments.bucket(name, f"sk{n}") < percent) == treated)


def test_settings_arms_change_the_blend_label_lists_and_are_cached_apart(vector_catalog, monkeypatch):
    products, _ = vector_catalog(n=40, in_stock_share=1.0)
    running()
    weights = []
    real_blend = serving._blend
    for module in (serving.similar, serving.for_you):  # where the package's modules look it up
        monkeypatch.setattr(module, "_blend", lambda sources, w: weights.append(w) or real_blend(sources, w))
    control, treatment = _session_in("control"), _session_in("treatment")

    a = serving.similar_items(products[0], 4, session_key=control)
    b = serving.similar_items(products[0], 4, session_key=treatment)
    serving.similar_items(products[0], 4, session_key=control)  # cached for the control arm

    assert (a.arm, b.arm) == ("blend:control", "blend:treatment")
    assert weights == [BLEND_A["SIMILAR_BLEND"], BLEND_B["SIMILAR_BLEND"]]
    assert serving.similar_items(products[0], 4).arm == ""  # no shopper: no arm


def test_version_arms_serve_their_version_and_impressions_and_clicks_carry_the_arm(vector_catalog):
    products, _ = vector_catalog(n=40, in_stock_share=1.0)
    v1 = ModelVersion.objects.create(kind="popularity", artifact="missing-1.npz")
    v2 = ModelVersion.objects.create(kind="popularity", artifact="missing-2.npz")
    training.activate(v1)
    serving.forget_active()
    running(name="versions", control_version=v1, treatment_version=v2, control_settings={}, treatment_settings={})
    treatment = _session_in("treatment", "versions")

    rec = serving.for_you(session_key=treatment, limit=4)
    impression = tracking.record_impression(rec, session_key=treatment)
    tracking.record_click(tracking.click_token(impression, rec[0].product.pk, 0), session_key=treatment)

    assert rec.model_version_id == v2.pk and rec.arm == "versions:treatment"
    assert serving.for_you(session_key=_session_in("control", "versions"), limit=4).model_version_id == v1.pk
    assert Impression.objects.get(id=impression).arm == "versions:treatment"
    counts = online_metrics.per_arm(["versions:control", "versions:treatment"])
    assert (counts["versions:treatment"].impressions, counts["versions:treatment"].clicks) == (1, 1)
    assert counts["versions:control"].clicks == 0


def test_ending_with_a_settings_winner_makes_it_the_serving_default():
    experiment = running()
    assert experiments.serving_settings()["SIMILAR_BLEND"] == {"visual": 0.7, "model": 0.3}  # VISREC default
    experiments.end(experiment, "treatment")
    assert experiments.serving_settings()["SIMILAR_BLEND"] == BLEND_B["SIMILAR_BLEND"]
    assert experiments.arm_for("similar-items", session_key="s").settings["SIMILAR_BLEND"] == BLEND_B["SIMILAR_BLEND"]


# -- statistics ---------------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computed_values():
    # 10/100: p = 0.1; centre = (0.1 + 1.96²/200) / (1 + 1.96²/100) = 0.11347; half = 0.05960
    low, high = experiments.wilson(10, 100)
    assert low == pytest.approx(0.05523, abs=1e-4) and high == pytest.approx(0.17437, abs=1e-4)
    assert experiments.wilson(0, 0) == (0.0, 0.0)
    low, high = experiments.wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-4)  # 1.96²/20 / (1 + 1.96²/20)


def test_two_proportion_z_test_matches_hand_computed_values():
    # 100/1000 vs 130/1000: pooled 0.115, se = sqrt(0.115 * 0.885 * 0.002) = 0.014267, z = 0.03 / se
    z, p = experiments.two_proportion_z(100, 1000, 130, 1000)
    assert z == pytest.approx(2.1027, abs=1e-3)
    assert p == pytest.approx(math.erfc(2.1027 / math.sqrt(2)), abs=1e-4) and p == pytest.approx(0.0355, abs=1e-3)
    assert experiments.two_proportion_z(0, 10, 0, 10) is None and experiments.two_proportion_z(1, 0, 1, 1) is None


def test_verdicts_in_plain_language():
    assert "treatment has a significantly higher CTR" in experiments.verdict("CTR", 100, 1000, 130, 1000)
    assert "control has a significantly higher CTR" in experiments.verdict("CTR", 130, 1000, 100, 1000)
    assert "No significant difference" in experiments.verdict("CTR", 10, 100, 12, 100)
    assert "Not enough data" in experiments.verdict("CTR", 0, 0, 0, 0)


# -- admin --------------------------------------------------------------------------------------


def test_admin_starts_and_ends_an_experiment_with_permission_and_logs_it(client, staff_user):
    v1 = ModelVersion.objects.create(kind="popularity", artifact="a.npz")
    v2 = ModelVersion.objects.create(kind="popularity", artifact="b.npz")
    training.activate(v1)
    experiment = Experiment.objects.create(name="ab", control_version=v1, treatment_version=v2)
    start, end = (reverse(f"admin:visrec_experiment_{a}", args=[experiment.pk]) for a in ("start", "end"))

    client.force_login(staff_user("recommendations.view_experiment", username="viewer"))
    assert client.post(start).status_code == 403
    client.force_login(
        staff_user(
            "recommendations.view_experiment",
            "recommendations.change_experiment",
            "recommendations.change_modelversion",
        )
    )
    assert client.get(start).status_code == 405
    assert client.post(start).status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == Experiment.RUNNING
    page = client.get(reverse("admin:recommendations_experiment_change", args=[experiment.pk]))
    assert b"End: promote treatment" in page.content and b"ab:treatment" in page.content

    assert client.post(end, {"winner": "treatment"}).status_code == 302
    experiment.refresh_from_db()
    v2.refresh_from_db()
    assert (experiment.status, experiment.winner, v2.is_active) == (Experiment.ENDED, "treatment", True)
    messages = list(LogEntry.objects.values_list("change_message", flat=True))
    assert any("Started experiment ab" in m for m in messages)
    assert any("promoted the treatment" in m for m in messages) and any("winner of ab" in m for m in messages)


def test_promoting_a_version_needs_the_activation_permission(client, staff_user):
    v1 = ModelVersion.objects.create(kind="popularity", artifact="a.npz")
    v2 = ModelVersion.objects.create(kind="popularity", artifact="b.npz")
    experiment = running(
        name="ab", control_version=v1, treatment_version=v2, control_settings={}, treatment_settings={}
    )
    client.force_login(staff_user("recommendations.change_experiment"))
    assert (
        client.post(reverse("admin:visrec_experiment_end", args=[experiment.pk]), {"winner": "treatment"}).status_code
        == 403
    )
    experiment.refresh_from_db()
    assert experiment.status == Experiment.RUNNING and not ModelVersion.objects.filter(is_active=True).exists()


def test_admin_form_refuses_mixed_arms(admin_client):
    v1 = ModelVersion.objects.create(kind="popularity", artifact="a.npz")
    data = {
        "name": "bad",
        "widget": "",
        "control_version": v1.pk,
        "treatment_version": "",
        "control_settings": "{}",
        "treatment_settings": '{"SIMILAR_BLEND": {"visual": 1}}',
        "treatment_percent": 50,
        "salt": "",
    }
    response = admin_client.post(reverse("admin:recommendations_experiment_add"), data)
    assert response.status_code == 200 and b"not both" in response.content
    assert not Experiment.objects.exists()


def test_a_started_experiment_is_read_only_in_the_admin_and_shows_its_arms(admin_client):
    experiment = running(name="ro", treatment_percent=20)
    url = reverse("admin:recommendations_experiment_change", args=[experiment.pk])
    assert admin_client.post(url, {"treatment_percent": 90, "_save": "Save"}).status_code == 302
    experiment.refresh_from_db()
    assert experiment.treatment_percent == 20 and experiment.status == Experiment.RUNNING
    page = admin_client.get(url).content.decode()
    assert "ro:control" in page and "Not enough data to compare CTR yet." in page
