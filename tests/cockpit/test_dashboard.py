"""The recommendation dashboard: online aggregates, SVG charts, activation, task runs and permissions."""

from __future__ import annotations

import datetime
import uuid
import xml.etree.ElementTree as ET

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from recommendations import tasks, training
from recommendations.cockpit import charts, online_metrics
from recommendations.models import Click, Impression, Interaction, ModelVersion, TaskRun
from tests.browser.conftest import browser, new_page, page  # noqa: F401  (Playwright fixtures)

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
TODAY = datetime.date(2026, 3, 10)


def at(day: datetime.date, hour: int = 12, minute: int = 0) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour, minute)))


def impression(widget: str, when, version=None, arm: str = "", session: str = "s1") -> str:
    row = Impression.objects.create(
        id=uuid.uuid4(), widget=widget, model_version_id=version, arm=arm, session_key=session, created_at=when,
        items=[{"product": 1, "position": 0, "reason": "visual"}],
    )  # fmt: skip
    return str(row.id)


def click(imp: str, widget: str, product, when, version=None, session: str = "s1", position: int = 0) -> Click:
    return Click.objects.create(
        impression_id=imp, widget=widget, model_version_id=version, product_id=product.pk, position=position,
        session_key=session, created_at=when,
    )  # fmt: skip


def purchase(product, when, session: str = "s1") -> None:
    Interaction.objects.create(product=product, kind="purchase", session_key=session, created_at=when)


@pytest.fixture
def traffic(product_factory):
    """Two days of hand-made traffic: see the comments for the expected numbers."""
    p, q = product_factory(), product_factory()
    day1, day2 = TODAY - datetime.timedelta(days=1), TODAY
    # day 1, similar-items (version 7): 3 impressions, 2 clicks; one click converts (p bought 2 h later)
    a = impression("similar-items", at(day1, 9), 7)
    b = impression("similar-items", at(day1, 10), 7, session="s2")
    impression("similar-items", at(day1, 11), 7)
    click(a, "similar-items", p, at(day1, 9, 1), 7)
    purchase(p, at(day1, 11))
    click(b, "similar-items", q, at(day1, 10, 1), 7, session="s2")
    purchase(q, at(day1, 9), session="s2")  # bought *before* the click: no conversion
    purchase(q, at(day1, 12), session="s9")  # another shopper: no conversion
    # day 2, for-you (no model): 1 impression, 1 click; the purchase comes 2 days later: outside the window
    c = impression("for-you", at(day2, 8))
    click(c, "for-you", p, at(day2, 8, 5))
    purchase(p, at(day2 + datetime.timedelta(days=2), 9))
    # older than the window: ignored
    impression("for-you", at(TODAY - datetime.timedelta(days=40)))
    return p, q


def test_daily_aggregates_per_widget_match_hand_counts(traffic):
    daily = online_metrics.daily("widget", days=30, today=TODAY)
    assert len(daily.days) == 30 and daily.days[-1] == TODAY
    similar, for_you = daily.groups["similar-items"], daily.groups["for-you"]
    day1 = similar[-2]
    assert (day1.impressions, day1.clicks, day1.conversions) == (3, 2, 1)
    assert day1.ctr == pytest.approx(2 / 3) and day1.conversion_rate == pytest.approx(1 / 3)
    assert (for_you[-1].impressions, for_you[-1].clicks, for_you[-1].conversions) == (1, 1, 0)
    assert sum(c.impressions for c in for_you) == 1  # the 40-day-old impression is outside
    totals = daily.totals()
    assert (totals["similar-items"].impressions, totals["similar-items"].clicks) == (3, 2)


def test_daily_aggregates_per_model_version(traffic):
    totals = online_metrics.daily("model_version_id", days=30, today=TODAY).totals()
    assert set(totals) == {"v7", "no model"}
    assert (totals["v7"].impressions, totals["v7"].clicks, totals["v7"].conversions) == (3, 2, 1)
    assert (totals["no model"].impressions, totals["no model"].clicks) == (1, 1)


def test_per_arm_counts_reach_clicks_through_their_impression(product_factory):
    p = product_factory()
    now = timezone.now()
    imps = [impression("for-you", now, arm="e:control", session=f"s{n}") for n in range(4)]
    imps += [impression("for-you", now, arm="e:treatment", session=f"t{n}") for n in range(2)]
    click(imps[0], "for-you", p, now, session="s0")
    click(imps[4], "for-you", p, now, session="t0")
    click(imps[5], "for-you", p, now, session="t1")
    purchase(p, now + datetime.timedelta(minutes=5), session="t1")
    counts = online_metrics.per_arm(["e:control", "e:treatment"])
    assert (counts["e:control"].impressions, counts["e:control"].clicks, counts["e:control"].conversions) == (4, 1, 0)
    t = counts["e:treatment"]
    assert (t.impressions, t.clicks, t.conversions) == (2, 2, 1)


def test_line_chart_is_valid_escaped_svg():
    svg = charts.line_chart("CTR <per> widget", ["a", "b", "c"], {"x&y": [0.1, None, 0.3], "z": [1, 2, 3]})
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title").text == "CTR <per> widget"
    assert len(root.findall(f".//{SVG}circle")) == 5  # the missing value has no dot
    assert len(root.findall(f".//{SVG}polyline")) == 1  # "x&y" is broken by the gap; "z" is one line
    assert "x&amp;y" in svg
    empty = ET.fromstring(str(charts.line_chart("nothing", [], {})))
    assert "No data yet" in "".join(empty.itertext())


def test_nice_axis_tops():
    assert [charts._nice_top(v) for v in (0, 0.07, 3, 7, 12, 999)] == [1.0, 0.1, 5, 10, 20, 1000]


# -- the page and its actions -------------------------------------------------------------------


def test_dashboard_needs_the_view_permission(client, staff_user):
    client.force_login(staff_user(username="nobody"))
    assert client.get(reverse("admin:visrec_dashboard")).status_code == 403
    assert client.get(reverse("admin:visrec_dashboard_tasks")).status_code == 403


def test_dashboard_renders_versions_charts_and_online_tables(client, staff_user, traffic):
    v1 = ModelVersion.objects.create(kind="popularity", artifact="a.npz", metrics={"recall@50": 0.21, "ndcg@12": 0.1})
    ModelVersion.objects.create(kind="als", artifact="b.npz", metrics={"recall@50": 0.34})
    training.activate(v1)
    client.force_login(staff_user("recommendations.view_modelversion"))
    response = client.get(reverse("admin:visrec_dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "recall@50 across model versions" in html and "0.3400" in html
    assert html.count('class="visrec-chart"') == 9  # versions + 4 per widget + 4 per version
    assert "Retrain now" not in html and "Roll back" not in html  # no permission, no buttons
    assert "visrec/admin/dashboard.js" in html


def test_activation_and_rollback_need_permission_and_are_logged(client, staff_user):
    old = ModelVersion.objects.create(kind="popularity", artifact="a.npz")
    new = ModelVersion.objects.create(kind="als", artifact="b.npz")
    training.activate(old)
    training.activate(new)
    url = reverse("admin:visrec_activate_version", args=[old.pk])

    client.force_login(staff_user("recommendations.view_modelversion", username="viewer"))
    assert client.post(url).status_code == 403
    assert ModelVersion.objects.active() == new

    client.force_login(staff_user("recommendations.view_modelversion", "recommendations.change_modelversion"))
    assert client.get(url).status_code == 405
    html = client.get(reverse("admin:visrec_dashboard")).content.decode()
    assert f"Roll back to v{old.pk}" in html
    assert client.post(url).status_code == 302
    assert ModelVersion.objects.active() == old
    entry = LogEntry.objects.get(object_id=str(old.pk))
    assert entry.change_message == f"Rolled back to popularity v{old.pk} (was v{new.pk})"
    assert client.post(reverse("admin:visrec_activate_version", args=[999999])).status_code == 404


def test_retrain_needs_permission_and_records_a_failed_run_without_data(
    client, staff_user, django_capture_on_commit_callbacks
):
    client.force_login(staff_user("recommendations.view_modelversion", username="viewer"))
    assert client.post(reverse("admin:visrec_retrain")).status_code == 403
    assert not TaskRun.objects.exists()

    client.force_login(staff_user("recommendations.view_modelversion", "recommendations.add_taskrun"))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("admin:visrec_retrain")).status_code == 302
    run = TaskRun.objects.get()
    assert (run.kind, run.status, run.params["trigger"]) == ("train", "failed", "admin")
    assert "no interactions" in run.message and run.finished_at is not None
    assert LogEntry.objects.filter(change_message__contains=f"run #{run.pk}").exists()
    runs = client.get(reverse("admin:visrec_dashboard_tasks")).json()["runs"]
    assert runs[0]["id"] == run.pk and runs[0]["status"] == "failed"


def test_retrain_runs_to_done_with_progress(client, staff_user, purchases_to_train_on, settings, tmp_path, monkeypatch):
    settings.VISREC = {"CACHE_DIR": str(tmp_path), "TRAIN_MODELS": ["popularity"], "TRAIN_HOLDOUT_FRACTION": 0.25}
    purchases_to_train_on()
    seen = []
    real = tasks.taskruns.progress
    monkeypatch.setattr(tasks.taskruns, "progress", lambda *a, **k: seen.append(a[1:3]) or real(*a, **k))
    tasks.train_models.apply()  # the nightly schedule: no run id, a run of its own
    run = TaskRun.objects.get()
    assert (run.status, run.params["trigger"], run.done, run.total) == ("done", "schedule", run.total, run.total)
    assert run.result["version"] == ModelVersion.objects.get().pk and "trained popularity" in run.message
    assert seen and seen[0] == (0, 2)


def test_reembed_missing_and_failed_runs_with_counts(
    client, staff_user, product_with_image, django_capture_on_commit_callbacks, settings
):
    settings.VISREC = {"AUTO_EMBED": False}
    product_with_image()
    product_with_image(image=b"not an image", filename="bad.jpg")
    client.force_login(staff_user("recommendations.view_modelversion", "recommendations.add_taskrun"))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("admin:visrec_reembed")).status_code == 302
    run = TaskRun.objects.get()
    assert (run.kind, run.status, run.done, run.total) == ("embed", "done", 2, 2)
    assert (run.result["embedded"], run.result["failed"]) == (1, 1)
    assert run.message == "1 embedded, 1 failed"


def test_the_sweep_records_a_run_only_when_it_finds_work(product_with_image, settings, monkeypatch):
    settings.VISREC = {"AUTO_EMBED": False}
    assert tasks.embed_missing.apply().get() == {"queued": 0} and not TaskRun.objects.exists()
    image = product_with_image().visrec_images.get()
    type(image).objects.filter(pk=image.pk).update(updated_at=timezone.now() - datetime.timedelta(hours=1))
    assert tasks.embed_missing.apply().get() == {"queued": 1}
    run = TaskRun.objects.get()
    assert (run.status, run.params["trigger"], run.result["embedded"]) == ("done", "schedule", 1)


# -- live progress in a browser (Debian's chromium; skipped without it, see tests/browser) ------


@pytest.mark.django_db(transaction=True)
def test_progress_updates_live_in_the_browser(page, admin_user, client):  # noqa: F811
    run = TaskRun.objects.create(kind=TaskRun.TRAIN, status=TaskRun.RUNNING, done=1, total=4, message="evaluating als")
    client.force_login(admin_user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": page.base_url}])
    page.goto(page.base_url + reverse("admin:visrec_dashboard"))
    row = page.locator(f'#visrec-tasks tr[data-run="{run.pk}"]')
    assert row.locator(".visrec-count").inner_text() == "1 / 4"

    TaskRun.objects.filter(pk=run.pk).update(done=4, status=TaskRun.DONE, message="trained als v3")

    row.locator(".visrec-status", has_text="done").wait_for(timeout=10_000)  # polled, no reload
    assert row.locator(".visrec-count").inner_text() == "4 / 4"
    assert row.locator(".visrec-message").inner_text() == "trained als v3"
    assert page.evaluate(f"document.querySelector('tr[data-run=\"{run.pk}\"] progress').value") == 1
