"""What-if replay: a rule, blend weights or a model version tried on a known traffic log, numbers by hand."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from django.utils import timezone

from recommendations import replay, serving, tasks, tracking, training
from recommendations.cockpit import taskruns
from recommendations.ml.knn import ItemKNN
from recommendations.models import Impression, Interaction, ModelVersion, Rule, TaskRun
from recommendations.replay import Candidate, Replayed, compare

pytestmark = pytest.mark.django_db

AGES_DAYS = [1, 2, 3, 5, 8, 13, 20, 25]  # the last two are older than the 14-day window


# -- the comparison, by hand -------------------------------------------------------------------


def _two_lists() -> list[Replayed]:
    return [
        Replayed(shown=["1", "2", "3", "4"], after=["1", "2", "3", "4"], followed={"4"}),
        Replayed(shown=["1", "2", "5", "6"], after=["9", "1", "2", "6"], followed={"6", "9"}),
    ]


CATEGORIES = {"1": (1, "A"), "2": (1, "A"), "3": (2, "B"), "4": (2, "B"), "5": (2, "B"), "6": (3, "C"), "9": (3, "C")}


def test_compare_matches_hand_computed_values():
    result = compare(_two_lists(), k=4, categories=CATEGORIES, catalogue=10, target=("product", "9", "product 9"))

    assert (result["lists"], result["changed"], result["changed_share"]) == (2, 1, 0.5)
    assert result["overlap_at_k"] == pytest.approx((4 / 4 + 3 / 4) / 2)  # {1,2,6} of {1,2,5,6} kept
    assert result["coverage"] == {
        "catalogue": 10,
        "before": 6,  # 1 2 3 4 5 6
        "after": 6,  # 1 2 3 4 6 9
        "before_share": 0.6,
        "after_share": 0.6,
    }
    mix = {row["category"]: (row["before"], row["after"]) for row in result["category_mix"]}
    assert mix == {"A": (4 / 8, 4 / 8), "B": (3 / 8, 2 / 8), "C": (1 / 8, 2 / 8)}
    # followed: 4 (list 1: shown, still shown), 6 (list 2: shown, still shown), 9 (list 2: not shown, now shown)
    assert result["followed"] == {"total": 3, "shown_before": 2, "shown_after": 3, "kept": 2, "lost": 0, "gained": 1}
    assert result["target"] == {
        "label": "product 9",
        "lists_before": 0,
        "lists_after": 1,
        "slots_before": 0,
        "slots_after": 1,
        "share_before": 0.0,
        "share_after": 1 / 8,
    }


def test_a_category_target_counts_every_product_of_the_category():
    result = compare(_two_lists(), k=2, categories=CATEGORIES, catalogue=10, target=("category", 2, "category 2"))

    target = result["target"]
    assert (target["lists_before"], target["slots_before"], target["share_before"]) == (2, 3, 3 / 8)
    assert (target["lists_after"], target["slots_after"], target["share_after"]) == (1, 2, 2 / 8)
    assert result["overlap_at_k"] == pytest.approx((1 + 1 / 2) / 2)  # top 2: {1,2} vs {1,2}; {1,2} vs {9,1}


# -- a known traffic log -------------------------------------------------------------------------


@pytest.fixture
def shop(vector_catalog):
    products, _ = vector_catalog(n=40, in_stock_share=1.0)
    return products


def log_traffic(products) -> dict:
    """Eight similar-items lists (as serving shows them now), one per anchor, and what their shoppers did next.

    Session ``s0`` clicks its list's first product an hour later, ``s1`` buys its list's
    last product two hours later, ``s2`` clicks three days later (past the follow-up
    day), ``s6`` (an old list) clicks an hour later.
    """
    now = timezone.now()
    lists = []
    for i, (anchor, age) in enumerate(zip(products[:8], AGES_DAYS, strict=True)):
        shown = serving.similar_items(anchor, 8, cached=False).product_ids
        impression = Impression.objects.create(
            id=uuid.uuid4(),
            widget="similar-items",
            source="visual",
            items=[{"product": pk, "position": n, "reason": "visual"} for n, pk in enumerate(shown)],
            session_key=f"s{i}",
            context={"product": anchor.pk, "category": anchor.category_id, "limit": 8},
            created_at=now - timedelta(days=age),
        )
        lists.append((impression, shown))
    for i, position, kind, later in [
        (0, 0, "click", timedelta(hours=1)),
        (1, 7, "purchase", timedelta(hours=2)),
        (2, 3, "click", timedelta(days=3)),
        (6, 0, "click", timedelta(hours=1)),
    ]:
        impression, shown = lists[i]
        Interaction.objects.create(
            session_key=f"s{i}", product_id=shown[position], kind=kind, created_at=impression.created_at + later
        )
    return {"lists": lists, "recent": lists[:6], "far": far_product(products), "now": now}


def far_product(products):
    """The first product that is neither an anchor nor in any anchor's similar items."""
    shown = {pk for anchor in products[:8] for pk in serving.similar_items(anchor, 8, cached=False).product_ids}
    return next(p for p in products[8:] if p.pk not in shown)


def _category_mix(lists_of_ids, products) -> dict[str, float]:
    names = {p.pk: p.category.name for p in products}
    slots = [names[pk] for ids in lists_of_ids for pk in ids]
    return {name: slots.count(name) / len(slots) for name in set(slots)}


def _pin_like(result, traffic, products) -> None:
    """The numbers of a change that puts ``far`` first in every recent list (the rest slide down one)."""
    recent = [shown for _, shown in traffic["recent"]]
    after = [[traffic["far"].pk, *shown[:7]] for shown in recent]
    assert (result["in_window"], result["lists"], result["changed"], result["changed_share"]) == (6, 6, 6, 1.0)
    assert result["overlap_at_k"] == pytest.approx(7 / 8)
    assert result["coverage"]["before"] == len({pk for ids in recent for pk in ids})
    assert result["coverage"]["after"] == len({pk for ids in after for pk in ids})
    assert result["coverage"]["catalogue"] == 40
    mix = {row["category"]: (row["before"], row["after"]) for row in result["category_mix"]}
    before, later = _category_mix(recent, products), _category_mix(after, products)
    assert mix == {name: (pytest.approx(before.get(name, 0.0)), pytest.approx(later.get(name, 0.0))) for name in mix}
    # s0's click (first product) is still shown; s1's purchase (last product) is pushed out; s2's was too late
    assert result["followed"] == {"total": 2, "shown_before": 2, "shown_after": 1, "kept": 1, "lost": 1, "gained": 0}


def test_a_pin_on_the_logged_traffic_by_hand(shop):
    traffic = log_traffic(shop)
    pin = Rule(kind=Rule.PIN, product=traffic["far"], widget="similar-items")  # not saved

    result = replay.what_if(Candidate(rule=pin))

    _pin_like(result, traffic, shop)
    assert result["target"] == {
        "label": f"product {traffic['far'].pk}",
        "lists_before": 0,
        "lists_after": 6,
        "slots_before": 0,
        "slots_after": 6,
        "share_before": 0.0,
        "share_after": 6 / 48,
    }
    assert not Rule.objects.exists()


def test_a_block_takes_its_product_out_of_the_lists_that_showed_it(shop):
    traffic = log_traffic(shop)
    blocked = traffic["recent"][0][1][2]  # the third product of the first list
    showing = [shown for _, shown in traffic["recent"] if blocked in shown]

    result = replay.what_if(Candidate(rule=Rule(kind=Rule.BLOCK, product_id=blocked)))

    assert result["changed"] == len(showing) and result["lists"] == 6
    overlaps = [7 / 8 if blocked in shown else 1.0 for _, shown in traffic["recent"]]
    assert result["overlap_at_k"] == pytest.approx(sum(overlaps) / 6)
    assert (result["target"]["lists_before"], result["target"]["lists_after"]) == (len(showing), 0)


def test_a_switched_off_rule_changes_nothing_and_the_shopper_is_replayed_as_at_the_view(shop):
    # s1 bought its list's last product two hours after the view: a replay that read today's
    # history would leave it out ("already bought") and count the list as changed.
    traffic = log_traffic(shop)
    off = Rule(kind=Rule.PIN, product=traffic["far"], is_active=False)

    result = replay.what_if(Candidate(rule=off))

    assert (result["lists"], result["changed"], result["overlap_at_k"]) == (6, 0, 1.0)
    assert result["followed"]["shown_before"] == result["followed"]["shown_after"] == 2
    assert result["target"]["slots_after"] == 0


def test_the_window_leaves_older_traffic_out_and_is_configurable(shop, settings):
    traffic = log_traffic(shop)
    pin = Candidate(rule=Rule(kind=Rule.PIN, product=traffic["far"]))

    assert replay.what_if(pin)["in_window"] == 6
    settings.VISREC = {"WHATIF_DAYS": 30}
    wide = replay.what_if(pin)
    assert (wide["in_window"], wide["lists"], wide["target"]["slots_after"]) == (8, 8, 8)
    assert wide["followed"]["total"] == 3  # s6's click on an old list now counts


def test_the_sample_is_bounded_uniform_and_repeatable(shop, settings):
    traffic = log_traffic(shop)
    pin = Candidate(rule=Rule(kind=Rule.PIN, product=traffic["far"]))
    since, until = replay.window()

    picked = replay.sample(replay.logged_lists(pin, since, until), 3)
    assert [i.pk for i in picked] == sorted(i.pk for i, _ in traffic["recent"])[:3]
    assert replay.what_if(pin, limit=3)["lists"] == 3
    settings.VISREC = {"WHATIF_QUICK_SAMPLE": 2}
    quick = replay.what_if(pin)
    assert (quick["in_window"], quick["sampled"], quick["lists"], quick["target"]["slots_after"]) == (6, 2, 2, 2)


def test_a_scoped_rule_replays_only_the_lists_in_its_scope(shop):
    traffic = log_traffic(shop)
    anchor = shop[0]
    scoped = Rule(kind=Rule.PIN, product=traffic["far"], scope_product=anchor)

    result = replay.what_if(Candidate(rule=scoped))

    assert (result["in_window"], result["lists"], result["changed"]) == (1, 1, 1)


def test_impressions_log_what_their_lists_were_asked_for(shop):
    anchor, cat = shop[0], shop[1].category_id
    similar = serving.similar_items(anchor, 4, exclude=[shop[3].pk])  # shown higher on the page
    personal = serving.for_you(session_key="ctx", limit=5, category=cat, exclude=[shop[2].pk])

    ids = [tracking.record_impression(rec, session_key="ctx") for rec in (similar, personal)]

    logged = Impression.objects.in_bulk(ids)
    assert logged[uuid.UUID(ids[0])].context == {
        "product": anchor.pk,
        "category": anchor.category_id,
        "limit": 4,
        "exclude": [shop[3].pk],
    }
    assert logged[uuid.UUID(ids[1])].context == {"category": cat, "limit": 5, "exclude": [shop[2].pk]}


def test_for_you_lists_are_replayed_with_the_history_they_were_shown_with(shop):
    # given: a session that viewed three products, was shown "for you" (one product left out,
    # as a product page does), then viewed others and bought a product of the list
    before = timezone.now() - timedelta(hours=2)
    for n, product in enumerate(shop[:3]):
        Interaction.objects.create(
            session_key="fy", product=product, kind="view", created_at=before + timedelta(minutes=n)
        )
    cat = shop[5].category_id
    shown = serving.for_you(session_key="fy", limit=8, category=cat, exclude=[shop[3].pk], cached=False)
    tracking.record_impression(shown, session_key="fy")
    later = timezone.now() + timedelta(minutes=1)
    for n, product in enumerate(shop[20:26]):
        Interaction.objects.create(
            session_key="fy", product=product, kind="view", created_at=later + timedelta(seconds=n)
        )
    Interaction.objects.create(session_key="fy", product_id=shown[1].product.pk, kind="purchase", created_at=later)
    same = Candidate(settings={"FOR_YOU_BLEND": {"model": 0.5, "session": 0.5}})  # the defaults

    # when / then: the defaults again change nothing; blocking its first product changes the list
    result = replay.what_if(same)
    assert (result["lists"], result["changed"], result["overlap_at_k"]) == (1, 0, 1.0)
    assert result["followed"] == {"total": 1, "shown_before": 1, "shown_after": 1, "kept": 1, "lost": 0, "gained": 0}
    blocked = replay.what_if(Candidate(rule=Rule(kind=Rule.BLOCK, product_id=shown[0].product.pk, widget="for-you")))
    assert (blocked["lists"], blocked["changed"], blocked["overlap_at_k"]) == (1, 1, pytest.approx(7 / 8))


def _knn_version(products, far) -> ModelVersion:
    """An item-kNN version whose only neighbour of every product is ``far`` (similarity 1)."""
    items = np.array(sorted(p.pk for p in products), dtype=np.int64)
    col = {int(pk): n for n, pk in enumerate(items)}
    rows = [col[p.pk] for p in products if p.pk != far.pk]
    similarity = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, [col[far.pk]] * len(rows))), shape=(len(items), len(items))
    )
    model = ItemKNN(prior_weight=0.0)
    model.similarity, model.tie_break = similarity, np.zeros(len(items), dtype=np.float32)
    model.prior, model.weight = np.zeros(len(items), dtype=np.float32), 0.0
    path = training.save_artifact(model, np.array(["u0"]), items)
    return ModelVersion.objects.create(kind=model.name, params=model.get_params(), artifact=path.name)


def test_activating_a_model_version_by_hand(shop, settings):
    # the model's neighbours alone count once there is a model: far comes first in every list
    settings.VISREC = {"SIMILAR_BLEND": {"visual": 0.0, "model": 1.0}}
    traffic = log_traffic(shop)  # shown with no active model: visual neighbours only
    version = _knn_version(shop, traffic["far"])

    result = replay.what_if(Candidate(version=version))

    _pin_like(result, traffic, shop)
    assert result["target"] is None and not ModelVersion.objects.filter(is_active=True).exists()


def test_changing_the_blend_weights_by_hand(shop, settings):
    version = _knn_version(shop, far_product(shop))
    training.activate(version)
    serving.forget_active()
    settings.VISREC = {"SIMILAR_BLEND": {"visual": 1.0, "model": 0.0}}
    traffic = log_traffic(shop)  # the model's neighbour weighs nothing: visual lists, far not among them

    result = replay.what_if(Candidate(settings={"SIMILAR_BLEND": {"visual": 0.0, "model": 1.0}}))

    _pin_like(result, traffic, shop)
    assert result["widgets"] == ["similar-items"]


def test_unreplayable_candidates_are_refused():
    with pytest.raises(replay.ReplayError, match="widget"):
        Candidate(rule=Rule(kind=Rule.PIN, product_id=1, widget="search-by-photo"))
    with pytest.raises(replay.ReplayError, match="unknown setting"):
        Candidate(settings={"NOPE": {"visual": 1}})
    with pytest.raises(replay.ReplayError, match="one rule"):
        Candidate()


# -- the background task --------------------------------------------------------------------------


def _replay_run(candidate: Candidate, sample: int) -> TaskRun:
    return taskruns.create(TaskRun.REPLAY, params={"candidate": candidate.to_params(), "sample": sample})


def test_the_background_task_reports_progress_and_its_result(shop, monkeypatch):
    traffic = log_traffic(shop)
    run = _replay_run(Candidate(rule=Rule(kind=Rule.PIN, product=traffic["far"], widget="similar-items")), 4)
    seen = []
    real = taskruns.progress
    monkeypatch.setattr(taskruns, "progress", lambda *a, **k: seen.append(a[1:3]) or real(*a, **k))

    tasks.whatif_replay.apply(args=(run.pk,))

    run.refresh_from_db()
    assert run.status == TaskRun.DONE and (run.done, run.total) == (4, 4)
    assert seen == [(n, 4) for n in range(5)]  # the total first, then one report per replayed list (4 < 50)
    assert (run.result["lists"], run.result["changed"], run.result["target"]["slots_after"]) == (4, 4, 4)
    assert run.message == "4 of 4 lists change"
    assert not Rule.objects.exists()


def test_the_task_updates_its_celery_state_on_a_worker(shop):
    traffic = log_traffic(shop)
    run = _replay_run(Candidate(rule=Rule(kind=Rule.PIN, product=traffic["far"])), 3)
    states = []
    worker = SimpleNamespace(
        request=SimpleNamespace(is_eager=False), update_state=lambda **kw: states.append(kw["meta"])
    )

    result = tasks._whatif(worker, run)

    assert states == [{"done": n, "total": 3} for n in range(4)]
    assert result["lists"] == 3


def test_a_task_whose_candidate_is_gone_fails_with_the_reason(db):
    run = taskruns.create(TaskRun.REPLAY, params={"candidate": {"version": 987654}, "sample": 5})
    tasks.whatif_replay.apply(args=(run.pk,))
    run.refresh_from_db()
    assert run.status == TaskRun.FAILED and "cannot replay" in run.message


# -- the three admin places ------------------------------------------------------------------------


def _rule_post(**fields) -> dict:
    data = {"kind": "pin", "widget": "", "multiplier": "1.0", "position": "0", "is_active": "on", "note": ""}
    data.update({k: "" if v is None else str(v) for k, v in fields.items()})
    return data


def test_rule_form_offers_the_whatif_and_shows_its_numbers(shop, client, staff_user):
    traffic = log_traffic(shop)
    client.force_login(staff_user("recommendations.add_rule", "recommendations.view_rule"))
    form = client.get("/admin/recommendations/rule/add/").content.decode()
    assert 'name="whatif" value="quick"' in form and "/admin/recommendations/rule/preview/" in form

    data = _rule_post(kind="pin", product=traffic["far"].pk, widget="similar-items", whatif="quick")
    response = client.post("/admin/recommendations/rule/preview/", data)

    assert response.status_code == 200
    assert response.context["whatif"]["changed"] == 6 and response.context["whatif"]["target"]["slots_after"] == 6
    html = response.content.decode()
    assert 'id="whatif-result"' in html and "6 of 6 (100 %)" in html and "0.875" in html
    assert not Rule.objects.exists()


def test_rule_form_starts_the_full_replay_in_the_background(
    shop, client, staff_user, django_capture_on_commit_callbacks
):
    traffic = log_traffic(shop)
    client.force_login(staff_user("recommendations.add_rule", "recommendations.add_taskrun"))
    data = _rule_post(kind="pin", product=traffic["far"].pk, whatif="full")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/recommendations/rule/preview/", data)

    run = TaskRun.objects.get(kind=TaskRun.REPLAY)
    assert response.status_code == 302 and response["Location"] == f"/admin/recommendations/taskrun/{run.pk}/change/"
    run.refresh_from_db()
    assert run.status == TaskRun.DONE and run.result["lists"] == 6  # eager Celery in the tests
    client.force_login(staff_user("recommendations.view_taskrun", username="viewer"))
    page = client.get(response["Location"]).content.decode()
    assert 'id="whatif-result"' in page and 'data-reload-done="1"' in page


def test_the_full_replay_needs_the_task_permission(shop, client, staff_user):
    traffic = log_traffic(shop)
    client.force_login(staff_user("recommendations.add_rule"))
    response = client.post("/admin/recommendations/rule/preview/", _rule_post(product=traffic["far"].pk, whatif="full"))
    assert response.status_code == 403 and not TaskRun.objects.exists()


def test_experiment_form_tries_the_treatment_blend_on_the_traffic(shop, admin_client, settings):
    version = _knn_version(shop, far_product(shop))
    training.activate(version)
    serving.forget_active()
    settings.VISREC = {"SIMILAR_BLEND": {"visual": 1.0, "model": 0.0}}
    log_traffic(shop)
    form = admin_client.get("/admin/recommendations/experiment/add/").content.decode()
    assert "/admin/recommendations/experiment/whatif/" in form

    posted = {"name": "b", "treatment_settings": '{"SIMILAR_BLEND": {"visual": 0.0, "model": 1.0}}', "whatif": "quick"}
    response = admin_client.post("/admin/recommendations/experiment/whatif/", posted)

    assert response.status_code == 200
    assert (response.context["whatif"]["lists"], response.context["whatif"]["changed"]) == (6, 6)
    assert 'id="whatif-result"' in response.content.decode()
    bad = admin_client.post("/admin/recommendations/experiment/whatif/", {"treatment_settings": "{", "whatif": "quick"})
    assert bad.status_code == 400 and b"not valid JSON" in bad.content


def test_model_activation_page_shows_the_whatif_before_activating(shop, admin_client, settings):
    settings.VISREC = {"SIMILAR_BLEND": {"visual": 0.0, "model": 1.0}}
    traffic = log_traffic(shop)
    version = _knn_version(shop, traffic["far"])
    dashboard = admin_client.get("/admin/recommendations/modelversion/dashboard/").content.decode()
    assert f"/admin/recommendations/modelversion/{version.pk}/whatif/" in dashboard

    response = admin_client.get(f"/admin/recommendations/modelversion/{version.pk}/whatif/")

    assert response.status_code == 200 and response.context["whatif"]["changed"] == 6
    html = response.content.decode()
    assert 'id="whatif-result"' in html and f"/admin/recommendations/modelversion/{version.pk}/activate/" in html
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_model_activation_whatif_needs_the_view_permission_and_can_run_in_the_background(
    shop, client, staff_user, settings, django_capture_on_commit_callbacks
):
    settings.VISREC = {"SIMILAR_BLEND": {"visual": 0.0, "model": 1.0}}
    traffic = log_traffic(shop)
    version = _knn_version(shop, traffic["far"])
    url = f"/admin/recommendations/modelversion/{version.pk}/whatif/"
    client.force_login(staff_user("recommendations.view_rule"))
    assert client.get(url).status_code == 403

    client.force_login(staff_user("recommendations.view_modelversion", "recommendations.add_taskrun", username="o2"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"whatif": "full"})

    run = TaskRun.objects.get(kind=TaskRun.REPLAY)
    assert response.status_code == 302 and run.params["candidate"] == {"version": version.pk}
    run.refresh_from_db()
    assert run.status == TaskRun.DONE and (run.result["lists"], run.result["changed"]) == (6, 6)
    assert not ModelVersion.objects.filter(is_active=True).exists()
