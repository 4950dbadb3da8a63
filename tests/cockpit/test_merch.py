"""The shop owner's rules and judgements in serving: pins, blocks, boosts, exclusions, dates, scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommendations import rules as rules_mod
from recommendations import serving
from recommendations.models import ImageState, Rule, SimilarityJudgement

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(vector_catalog):
    products, _ = vector_catalog(n=120, in_stock_share=1.0)
    return products


def _ids(rec_list) -> list[int]:
    return [r.product.pk for r in rec_list]


def test_pin_comes_first_in_position_order_and_only_in_its_scope(shop):
    anchor, other = shop[0], shop[1]
    before = _ids(serving.similar_items(anchor, 8))
    far = [p for p in shop if p.pk not in before and p.pk not in (anchor.pk, other.pk)]
    Rule.objects.create(kind=Rule.PIN, product=far[0], position=2, widget="similar-items")
    Rule.objects.create(kind=Rule.PIN, product=far[1], position=1, widget="similar-items", scope_product=anchor)
    after = serving.similar_items(anchor, 8)
    assert _ids(after)[:2] == [far[1].pk, far[0].pk]
    assert after[0].reason == "pinned" and _ids(after)[2:] == before[:6]
    # the anchor-scoped pin stays on the anchor's page; the widget-wide pin shows elsewhere too
    elsewhere = _ids(serving.similar_items(other, 8))
    assert elsewhere[0] == far[0].pk and far[1].pk not in elsewhere
    # a pin for another widget does not touch similar items
    Rule.objects.create(kind=Rule.PIN, product=far[2], widget="for-you")
    assert far[2].pk not in _ids(serving.similar_items(anchor, 8))


def test_pin_of_an_unrecommendable_product_is_not_shown(shop):
    anchor, gone = shop[0], shop[5]
    gone.stock = 0
    gone.save()
    Rule.objects.create(kind=Rule.PIN, product=gone)
    assert gone.pk not in _ids(serving.similar_items(anchor, 8))


def test_block_is_an_sql_filter_and_the_list_stays_full(shop):
    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[0])
    after = _ids(serving.similar_items(anchor, 8))
    assert before[0] not in after and len(after) == 8 and after[:7] == before[1:]
    sql, params = serving.neighbour_sql(
        serving.anchor_vector(anchor.pk, serving.active().embedding),
        serving.active().embedding,
        8,
        rules=rules_mod.rules_for("similar-items", anchor=anchor),
    )
    assert "NOT" in sql and before[0] in params  # the block is in the query, not applied afterwards


def test_category_exclusion_scoped_by_category(shop):
    anchor = shop[0]
    cats = sorted({p.category_id for p in shop})
    Rule.objects.create(kind=Rule.EXCLUDE_CATEGORY, category_id=cats[1], scope_category_id=anchor.category_id)
    items = serving.similar_items(anchor, 10)
    assert len(items) == 10 and cats[1] not in {r.product.category_id for r in items}
    other = next(p for p in shop if p.category_id != anchor.category_id)
    assert cats[1] in {r.product.category_id for r in serving.similar_items(other, 20)}


def test_boost_multiplies_scores_before_the_final_sort_within_its_dates(shop):
    anchor = shop[0]
    before = serving.similar_items(anchor, 8)
    last = before[7]
    rule = Rule.objects.create(kind=Rule.BOOST, product_id=last.product.pk, multiplier=10.0)
    after = serving.similar_items(anchor, 8)
    assert after[0].product.pk == last.product.pk
    assert after[0].score == pytest.approx(last.score * 10.0)
    rule.starts_at = timezone.now() + timedelta(days=1)
    rule.save()
    assert _ids(serving.similar_items(anchor, 8)) == _ids(before)
    rule.starts_at, rule.ends_at = timezone.now() - timedelta(days=2), timezone.now() - timedelta(days=1)
    rule.save()
    assert _ids(serving.similar_items(anchor, 8)) == _ids(before)


def test_category_boost_below_one_sinks_a_category(shop):
    anchor = shop[0]
    before = serving.similar_items(anchor, 8)
    sunk = before[0].product.category_id
    Rule.objects.create(kind=Rule.BOOST, category_id=sunk, multiplier=0.01)
    after = serving.similar_items(anchor, 8)
    cats = [r.product.category_id for r in after]
    first_sunk = cats.index(sunk) if sunk in cats else len(cats)
    assert all(c == sunk for c in cats[first_sunk:])


def test_inactive_rule_is_ignored(shop):
    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[0], is_active=False)
    assert _ids(serving.similar_items(anchor, 8)) == before


def test_settings_rules_combine_with_db_rules(shop, settings):
    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    settings.VISREC = {**settings.VISREC, "RULES": {"BLOCKED": [before[0]]}}
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[1])
    after = _ids(serving.similar_items(anchor, 8))
    assert before[0] not in after and before[1] not in after and after[:6] == before[2:]


def test_rules_apply_to_for_you_and_popular(shop):
    pinned = shop[7]
    Rule.objects.create(kind=Rule.PIN, product=pinned, widget="for-you")
    assert serving.for_you(session_key="s1", limit=5)[0].product.pk == pinned.pk
    top = serving.popular(5)
    Rule.objects.create(kind=Rule.BLOCK, product_id=top[0].product.pk)
    assert top[0].product.pk not in [r.product.pk for r in serving.popular(5)]


def test_steady_state_costs_no_rule_query(shop, django_assert_num_queries):
    anchor = shop[0]
    Rule.objects.create(kind=Rule.BOOST, product=shop[3], multiplier=2.0)
    serving.similar_items(anchor, 8)
    with django_assert_num_queries(1) as ctx:  # the cached list: its products, primary image files included
        serving.similar_items(anchor, 8)
    assert not any("recommendations_rule" in q["sql"] for q in ctx.captured_queries)


def test_a_saved_rule_reaches_another_process_through_the_version(shop):
    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    rules_mod.merch_data()
    stale = dict(rules_mod._local_merch)
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[0])
    # another process still holds the old data but its check interval has passed
    key, (_, data) = next(iter(stale.items()))
    rules_mod._local_merch.clear()
    rules_mod._local_merch[key] = (-1e9, data)
    assert before[0] not in _ids(serving.similar_items(anchor, 8))


def test_not_similar_hides_the_pair_both_ways_at_once(shop, django_user_model):
    a = shop[0]
    before = _ids(serving.similar_items(a, 8))
    b = next(p for p in shop if p.pk == before[0])
    SimilarityJudgement.objects.create(product=a, neighbour=b, verdict=SimilarityJudgement.NOT_SIMILAR)
    assert b.pk not in _ids(serving.similar_items(a, 8))
    assert a.pk not in _ids(serving.similar_items(b, 30))
    # other lists are untouched
    assert b.pk in _ids(serving.similar_items(shop[1], 200))


def test_good_match_is_lifted_to_the_top_even_from_outside_the_top_k(shop):
    a = shop[0]
    before = _ids(serving.similar_items(a, 8))
    far = next(p for p in reversed(shop) if p.pk not in before and p.pk != a.pk)
    SimilarityJudgement.objects.create(product=a, neighbour=far, verdict=SimilarityJudgement.GOOD)
    after = serving.similar_items(a, 8)
    assert _ids(after)[0] == far.pk and after[0].reason == "visual"
    assert _ids(after)[1:] == before[:7]


def test_similar_items_uncached_for_the_admin_computes_afresh(shop, django_assert_max_num_queries):
    a = shop[0]
    serving.similar_items(a, 8)
    with django_assert_max_num_queries(10) as ctx:
        serving.similar_items(a, 8, cached=False)
    assert any("<=>" in q["sql"] for q in ctx.captured_queries)


# -- admin: rule form, preview, product page preview and judgements ---------------------------


def _rule_post(**fields) -> dict:
    data = {"kind": "pin", "widget": "", "multiplier": "1.0", "position": "0", "is_active": "on", "note": ""}
    data.update({k: "" if v is None else str(v) for k, v in fields.items()})
    return data


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"kind": "pin"}, "product", "needs a product"),
        ({"kind": "block"}, "product", "needs a product"),
        ({"kind": "exclude_category"}, "category", "needs a category"),
        ({"kind": "boost", "multiplier": "0"}, None, "product or a category"),
        ({"kind": "boost", "multiplier": "-1", "product": "P"}, "multiplier", "greater than 0"),
        (
            {"kind": "block", "product": "P", "starts_at": "2026-01-02 00:00", "ends_at": "2026-01-01 00:00"},
            "ends_at",
            "after the start",
        ),
        ({"kind": "block", "product": "P", "widget": "nope"}, "widget", "Unknown widget"),
    ],
)
def test_rule_form_validation(shop, fields, field, message):
    from recommendations.cockpit.merch import RuleForm

    data = _rule_post(**{k: shop[0].pk if v == "P" else v for k, v in fields.items()})
    data["starts_at"], data["ends_at"] = fields.get("starts_at", ""), fields.get("ends_at", "")
    form = RuleForm(data)
    assert not form.is_valid()
    errors = form.errors.get(field or "__all__", [])
    assert any(message in e for e in errors), form.errors


def test_rule_admin_adds_a_rule_with_a_log_entry_and_serving_applies_it(shop, client, staff_user):
    from django.contrib.admin.models import LogEntry

    user = staff_user("recommendations.add_rule", "recommendations.change_rule", "recommendations.view_rule")
    client.force_login(user)
    anchor = shop[0]
    blocked = serving.similar_items(anchor, 8)[0].product
    response = client.post("/admin/recommendations/rule/add/", _rule_post(kind="block", product=blocked.pk))
    assert response.status_code == 302, response.content[:2000]
    rule = Rule.objects.get()
    assert rule.created_by == user
    assert LogEntry.objects.filter(object_id=str(rule.pk), user=user).exists()
    assert blocked.pk not in _ids(serving.similar_items(anchor, 8))


def test_rule_admin_refuses_staff_without_permission(shop, client, staff_user):
    client.force_login(staff_user("recommendations.view_rule"))
    response = client.post("/admin/recommendations/rule/add/", _rule_post(kind="block", product=shop[0].pk))
    assert response.status_code == 403 and not Rule.objects.exists()
    response = client.post("/admin/recommendations/rule/preview/", _rule_post(kind="block", product=shop[0].pk))
    assert response.status_code == 403


def test_rule_preview_shows_before_and_after_without_saving(shop, client, staff_user):
    client.force_login(staff_user("recommendations.add_rule"))
    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    far = next(p for p in shop if p.pk not in before and p.pk != anchor.pk)
    data = _rule_post(kind="pin", product=far.pk, widget="similar-items", preview_product=anchor.pk)
    response = client.post("/admin/recommendations/rule/preview/", data)
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [b.product.pk for b, _ in rows] == before
    assert [a.product.pk for _, a in rows] == [far.pk, *before[:7]]
    assert far.pk in response.context["changed"] and b"rule-preview-table" in response.content
    assert not Rule.objects.exists()
    # invalid rule: a clear 400 with the form's errors
    bad = client.post("/admin/recommendations/rule/preview/", _rule_post(kind="pin", preview_product=anchor.pk))
    assert bad.status_code == 400 and b"needs a product" in bad.content


def test_rule_preview_of_a_saved_rule_compares_with_it_switched_off(shop, client, staff_user):
    client.force_login(staff_user("recommendations.change_rule"))
    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    rule = Rule.objects.create(kind=Rule.BLOCK, product_id=before[0], widget="similar-items")
    response = client.get(f"/admin/recommendations/rule/{rule.pk}/preview/?preview_product={anchor.pk}")
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [b.product.pk for b, _ in rows] == before
    assert before[0] not in [a.product.pk for _, a in rows if a]


def test_product_admin_shows_what_shoppers_see_with_judgement_buttons(shop, client, staff_user):
    Rule.objects.create(kind=Rule.PIN, product=shop[9])
    client.force_login(staff_user("catalog.change_product", "recommendations.add_similarityjudgement"))
    anchor = shop[0]
    response = client.get(f"/admin/catalog/product/{anchor.pk}/change/")
    assert response.status_code == 200
    shown = [r.product.pk for r, _ in response.context["similar_rows"]]
    assert shown == _ids(serving.similar_items(anchor, 8)) and shown[0] == shop[9].pk
    html = response.content.decode()
    assert 'id="similar-items-preview"' in html and 'value="not_similar"' in html and "csrfmiddlewaretoken" in html


def test_judgement_buttons_apply_at_once_and_are_logged(shop, client, staff_user):
    from django.contrib.admin.models import LogEntry

    user = staff_user("catalog.change_product", "recommendations.add_similarityjudgement")
    client.force_login(user)
    anchor = shop[0]
    neighbour = serving.similar_items(anchor, 8)[0].product
    url = f"/admin/catalog/product/{anchor.pk}/judge/"
    response = client.post(url, {"neighbour": neighbour.pk, "verdict": "not_similar"})
    assert response.status_code == 302
    judgement = SimilarityJudgement.objects.get(product=anchor, neighbour_id=neighbour.pk)
    assert judgement.verdict == "not_similar" and judgement.created_by == user
    assert neighbour.pk not in _ids(serving.similar_items(anchor, 8))
    assert LogEntry.objects.filter(object_id=str(anchor.pk), user=user, change_message__contains="Not similar").exists()
    page = client.get(f"/admin/catalog/product/{anchor.pk}/change/")
    assert neighbour.pk not in [r.product.pk for r, _ in page.context["similar_rows"]]
    # changing one's mind: good match replaces the verdict and lifts it to the top
    client.post(url, {"neighbour": neighbour.pk, "verdict": "good"})
    assert SimilarityJudgement.objects.get(product=anchor, neighbour_id=neighbour.pk).verdict == "good"
    assert _ids(serving.similar_items(anchor, 8))[0] == neighbour.pk


@pytest.mark.parametrize(
    "post",
    [
        {"neighbour": "x", "verdict": "good"},
        {"neighbour": "SELF", "verdict": "good"},
        {"neighbour": "N", "verdict": "meh"},
    ],
)
def test_bad_judgements_are_refused_without_a_500(shop, client, staff_user, post):
    client.force_login(staff_user("catalog.change_product", "recommendations.add_similarityjudgement"))
    post = {k: {"SELF": shop[0].pk, "N": shop[1].pk}.get(v, v) for k, v in post.items()}
    response = client.post(f"/admin/catalog/product/{shop[0].pk}/judge/", post)
    assert response.status_code == 302 and not SimilarityJudgement.objects.exists()


def test_judging_needs_the_permission_and_a_post(shop, client, staff_user):
    client.force_login(staff_user("catalog.change_product"))
    url = f"/admin/catalog/product/{shop[0].pk}/judge/"
    assert client.post(url, {"neighbour": shop[1].pk, "verdict": "good"}).status_code == 403
    page = client.get(f"/admin/catalog/product/{shop[0].pk}/change/")
    assert 'value="not_similar"' not in page.content.decode()
    client.force_login(staff_user("recommendations.add_similarityjudgement", username="other"))
    assert client.get(url).status_code == 405
    assert not SimilarityJudgement.objects.exists()


def test_bulk_reembed_and_retry_failed_need_the_task_permission(
    shop, client, staff_user, django_capture_on_commit_callbacks
):
    from django.contrib.admin.models import LogEntry


    image = ImageState.objects.get(product=shop[2])
    image.status, image.error = ImageState.Status.FAILED, "cannot identify image file"
    image.save()
    data = {"action": "retry_failed", "_selected_action": [shop[2].pk, shop[3].pk]}
    client.force_login(staff_user("catalog.change_product", "catalog.view_product"))
    client.post("/admin/catalog/product/", data)
    image.refresh_from_db()
    assert image.status == ImageState.Status.FAILED
    user = staff_user("catalog.change_product", "catalog.view_product", "recommendations.add_taskrun", username="boss")
    client.force_login(user)
    with django_capture_on_commit_callbacks() as callbacks:
        client.post("/admin/catalog/product/", data)
    image.refresh_from_db()
    assert image.status == ImageState.Status.PENDING and image.error == "" and len(callbacks) == 1
    assert ImageState.objects.get(product=shop[3]).status == ImageState.Status.READY  # only failed ones
    assert LogEntry.objects.filter(object_id=str(shop[2].pk), user=user).exists()


# -- judgements in the training snapshot and the evaluation ------------------------------------


def test_judgement_agreement_by_hand():
    import numpy as np

    from recommendations.ml.evaluation import judgement_agreement

    neighbours = {0: [1, 2], 3: [4, 5]}

    def similar(itemids, n):
        ids = np.array([neighbours[int(i)][:n] for i in itemids])
        return ids, np.ones_like(ids, dtype=float)

    pairs = np.array([[0, 1], [0, 7], [3, 5], [3, 4], [0, 9]])
    labels = np.array([1, 1, -1, 1, -1])  # good in, good out, bad in, good in, bad out
    got = judgement_agreement(similar, pairs, labels, k=2)
    assert got["judged_good_in_top@2"] == pytest.approx(2 / 3)
    assert got["judged_bad_excluded@2"] == pytest.approx(1 / 2)
    assert got["judgement_agreement@2"] == pytest.approx(3 / 5)
    assert got["judged_pairs"] == 5
    # with k=1 only the first neighbour counts: the bad (3, 5) is now excluded
    assert judgement_agreement(similar, pairs, labels, k=1)["judged_bad_excluded@1"] == 1.0
    empty = judgement_agreement(similar, np.empty((0, 2)), np.empty(0), k=2)
    assert np.isnan(empty["judgement_agreement@2"]) and empty["judged_pairs"] == 0


def test_cosine_neighbours_excludes_the_item_and_empty_rows():
    import numpy as np

    from recommendations.ml.evaluation import cosine_neighbours

    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [0, 0]], dtype=np.float32)
    ids, scores = cosine_neighbours(features)(np.array([0, 2]), 2)
    assert ids.tolist() == [[1, 2], [1, 0]]
    assert scores[0, 0] > scores[0, 1]


def test_snapshot_exposes_judgements_as_pairs(shop):
    from recommendations.data import build_snapshot

    a, b, c, gone = shop[0], shop[1], shop[2], shop[3]
    gone.is_active = False
    gone.save()
    SimilarityJudgement.objects.create(product=a, neighbour=b, verdict=SimilarityJudgement.GOOD)
    SimilarityJudgement.objects.create(product=a, neighbour=c, verdict=SimilarityJudgement.NOT_SIMILAR)
    SimilarityJudgement.objects.create(product=a, neighbour=gone, verdict=SimilarityJudgement.NOT_SIMILAR)
    snapshot = build_snapshot()
    col = {int(pk): i for i, pk in enumerate(snapshot.items)}
    got = {(int(x), int(y)): int(v) for (x, y), v in zip(snapshot.judged_pairs, snapshot.judged_labels, strict=True)}
    assert got == {(col[a.pk], col[b.pk]): 1, (col[a.pk], col[c.pk]): -1, (col[c.pk], col[a.pk]): -1}


def test_training_reports_judgement_agreement_per_candidate(shop, settings, tmp_path):
    import numpy as np
    from django.utils import timezone

    from recommendations import training
    from recommendations.models import Interaction

    settings.VISREC = {**settings.VISREC, "CACHE_DIR": str(tmp_path), "TRAIN_HOLDOUT_FRACTION": 0.25}
    rng = np.random.default_rng(1)
    now = timezone.now()
    Interaction.objects.bulk_create(
        Interaction(
            session_key=f"s{u}",
            product=shop[int(p)],
            kind="purchase",
            created_at=now - timedelta(days=float(rng.uniform(0, 60))),
        )
        for u in range(40)
        for p in rng.choice(30, 4, replace=False)
    )
    anchor = shop[0]
    visual = [r.product for r in serving.similar_items(anchor, 8)]
    SimilarityJudgement.objects.create(product=anchor, neighbour_id=visual[0].pk, verdict=SimilarityJudgement.GOOD)
    not_similar = SimilarityJudgement.NOT_SIMILAR
    SimilarityJudgement.objects.create(product=anchor, neighbour_id=visual[1].pk, verdict=not_similar)
    version = training.train(["item_knn"])
    m = version.metrics
    assert m["judged_pairs"] == 3 and 0 <= m["judgement_agreement@8"] <= 1
    # plain visual similarity has the good pair in its top 8 and the bad one too (the owner disagrees)
    assert m["visual_judged_good_in_top@8"] == 1.0
    assert m["visual_judged_bad_excluded@8"] < 1.0


def _judged_world(seed: int = 0):
    """200 items whose cosine is dominated by 'background' dims; the owner judges by the 'style' dims."""
    import numpy as np

    from recommendations.ml.evaluation import cosine_neighbours

    rng = np.random.default_rng(seed)
    style, background = rng.normal(size=(200, 4)), rng.normal(size=(200, 12)) * 1.5
    features = np.hstack([style, background]).astype(np.float32)
    by_look, _ = cosine_neighbours(features)(np.arange(200), 8)
    by_style, _ = cosine_neighbours(style.astype(np.float32))(np.arange(200), 8)
    pairs, labels = [], []
    for a in range(0, 120, 2):
        pairs.append((a, int(by_style[a, 0])))
        labels.append(1)
        if by_look[a, 0] not in by_style[a]:
            pairs.append((a, int(by_look[a, 0])))
            labels.append(-1)
    return features, np.array(pairs), np.array(labels)


def test_learned_reweighting_agrees_with_held_out_judgements():
    import numpy as np

    from recommendations.ml.evaluation import cosine_neighbours, judgement_agreement
    from recommendations.ml.judged import learn_pair_weights, reweight

    features, pairs, labels = _judged_world()
    train = np.arange(len(pairs)) < len(pairs) * 2 // 3  # held-out pairs are other anchors
    weights = learn_pair_weights(features, pairs[train], labels[train])
    assert weights[:4].min() > weights[4:].max()  # the owner's dimensions gain weight
    before = judgement_agreement(cosine_neighbours(features), pairs[~train], labels[~train], 8)
    after = judgement_agreement(cosine_neighbours(reweight(features, weights)), pairs[~train], labels[~train], 8)
    assert after["judgement_agreement@8"] > before["judgement_agreement@8"] + 0.5
    assert np.array_equal(learn_pair_weights(features, np.empty((0, 2)), np.empty(0)), np.ones(16))


def test_visual_model_trained_with_judgements_serves_reweighted_neighbours():
    import numpy as np
    import scipy.sparse as sp

    from recommendations.ml.base import FitContext
    from recommendations.ml.evaluation import judgement_agreement
    from recommendations.ml.visual import VisualSimilarity

    features, pairs, labels = _judged_world(seed=1)
    user_items = sp.csr_matrix(np.eye(200, dtype=np.float32)[:50])
    plain = VisualSimilarity(center=False, whiten=0, prior_weight=0.0)
    plain.fit(user_items, features)
    judged = VisualSimilarity(center=False, whiten=0, prior_weight=0.0)
    judged.fit(user_items, features, FitContext(judged_pairs=pairs, judged_labels=labels))
    agree = [judgement_agreement(m.similar_items, pairs, labels, 8)["judgement_agreement@8"] for m in (plain, judged)]
    assert agree[1] > agree[0] + 0.5


# -- the API and the shop page ---------------------------------------------------------------


def test_api_similar_items_show_pins_first_and_never_blocked(shop, client):
    anchor = shop[0]
    before = [i["id"] for i in client.get(f"/api/v1/products/{anchor.pk}/similar/?limit=6").json()["results"]]
    far = next(p for p in shop if p.pk not in before and p.pk != anchor.pk)
    Rule.objects.create(kind=Rule.PIN, product=far, scope_product=anchor)
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[0])
    body = client.get(f"/api/v1/products/{anchor.pk}/similar/?limit=6").json()
    ids = [i["id"] for i in body["results"]]
    assert ids[0] == far.pk and body["results"][0]["reason"] == "pinned"
    assert before[0] not in ids and ids[1:] == before[1:6]


def test_shop_page_shows_the_pin_first_and_drops_a_not_similar_neighbour(shop, client):
    from tests.serving.conftest import widget_ids

    anchor = shop[0]
    before = widget_ids(client.get(f"/product/{anchor.pk}/").content.decode(), "similar-items")
    assert before
    SimilarityJudgement.objects.create(product=anchor, neighbour_id=before[0], verdict=SimilarityJudgement.NOT_SIMILAR)
    far = next(p for p in shop if p.pk not in before and p.pk != anchor.pk)
    Rule.objects.create(kind=Rule.PIN, product=far, widget="similar-items")
    after = widget_ids(client.get(f"/product/{anchor.pk}/").content.decode(), "similar-items")
    assert after[0] == far.pk and before[0] not in after


def test_rules_survive_a_database_error_while_reloading(shop, monkeypatch):
    from django.db import DatabaseError

    anchor = shop[0]
    before = _ids(serving.similar_items(anchor, 8))
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[0])
    assert before[0] not in _ids(serving.similar_items(anchor, 8))

    def down(version=""):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(rules_mod, "load_merch", down)
    rules_mod.bump_merch_version()
    assert rules_mod.merch_data().rules == []  # nothing loaded yet in this process: no rules, no error
    key, (_, data) = next(iter(rules_mod._local_merch.items()))
    monkeypatch.undo()
    rules_mod._local_merch[key] = (-1e9, data)
    assert before[0] not in _ids(serving.similar_items(anchor, 8))  # reloaded once the database answers


def test_rule_pages_render_with_the_preview_controls(shop, admin_client):
    add = admin_client.get("/admin/recommendations/rule/add/")
    assert add.status_code == 200 and 'name="preview_product"' in add.content.decode()
    rule = Rule.objects.create(kind=Rule.BLOCK, product=shop[1], scope_product=shop[0])
    change = admin_client.get(f"/admin/recommendations/rule/{rule.pk}/change/").content.decode()
    assert f"/admin/recommendations/rule/{rule.pk}/preview/" in change and f'value="{shop[0].pk}"' in change
    assert admin_client.get("/admin/recommendations/rule/").status_code == 200
    assert admin_client.get("/admin/recommendations/rule/999999/preview/").status_code in (302, 403, 404)


def test_product_list_shows_failure_reasons(shop, admin_client):

    ImageState.objects.filter(product=shop[0]).update(status=ImageState.Status.FAILED, error="truncated JPEG")
    page = admin_client.get("/admin/catalog/product/?q=V3-00000").content.decode()
    assert "truncated JPEG" in page and "Failed" in page


def test_merch_is_not_a_per_call_override(shop):
    with pytest.raises(ValueError, match="unknown rule"):
        rules_mod.rules_for("similar-items", merch=rules_mod.Merch(blocked=(1,)))


def test_popular_lists_follow_pins_and_blocks_for_every_widget(shop):
    before = _ids(serving.popular(8))
    outsider = next(p for p in shop if p.pk not in before)
    Rule.objects.create(kind=Rule.PIN, product=outsider)  # blank widget: every list
    Rule.objects.create(kind=Rule.BLOCK, product_id=before[0])
    Rule.objects.create(kind=Rule.PIN, product=shop[-1], widget="for-you")  # another widget's pin
    after = serving.popular(8)
    assert _ids(after)[0] == outsider.pk and after[0].reason == "pinned"
    assert before[0] not in _ids(after) and shop[-1].pk not in _ids(after)
