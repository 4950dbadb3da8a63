"""The widget template tags and the shop pages that use them."""

import re

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from recommendations import serving
from recommendations.models import Impression, Interaction

pytestmark = pytest.mark.django_db


def _render(source: str, **context) -> str:
    request = RequestFactory().get("/")
    return Template("{% load visrec %}" + source).render(Context({"request": request, **context}))


def _ids(html: str, widget: str | None = None) -> list[int]:
    if widget is not None:
        html = html.split(f'data-visrec-widget="{widget}"', 1)[1].split("</section>", 1)[0]
    return [int(x) for x in re.findall(r'data-product-id="(\d+)"', html)]


def test_markup_carries_widget_and_product_ids(small_catalog):
    html = _render("{% similar_items product limit=4 %}", product=small_catalog["anchor"])
    assert 'data-visrec-widget="similar-items"' in html
    ids = _ids(html)
    assert len(ids) == 4
    assert ids[0] == small_catalog["twin"].pk
    assert small_catalog["anchor"].pk not in ids
    assert html.count('loading="lazy"') == 4
    assert 'aria-labelledby="visrec-similar-items-title"' in html
    assert html.count('alt="') == 4
    assert html.count('href="/r/') == 4  # every link carries a click token


def test_old_positional_limit_still_works(small_catalog):
    assert len(_ids(_render("{% similar_items product 3 %}", product=small_catalog["anchor"]))) == 3


def test_tag_rule_overrides(small_catalog):
    blocked = small_catalog["twin"].pk
    html = _render(
        "{% similar_items product limit=8 blocked=blocked max_per_category=2 %}",
        product=small_catalog["anchor"],
        blocked=blocked,
    )
    ids = _ids(html)
    assert blocked not in ids
    shirts = small_catalog["anchor"].category_id
    by_pk = {p.pk: p for p in small_catalog.values()}
    assert sum(by_pk[pk].category_id == shirts for pk in ids) <= 2
    assert len(ids) == 3  # the cousin (twin blocked) + 2 of the 4 mugs (cap)


def test_rendering_records_an_impression(small_catalog):
    html = _render("{% similar_items product limit=3 %}", product=small_catalog["anchor"])
    impression = Impression.objects.get(pk=re.search(r'data-impression="([^"]+)"', html).group(1))
    assert impression.widget == "similar-items"
    assert [i["product"] for i in impression.items] == _ids(html)
    assert [i["position"] for i in impression.items] == [0, 1, 2]
    assert f'data-impression="{impression.id}"' in html


def test_backend_failure_renders_popular_in_category(small_catalog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("vector index down")

    monkeypatch.setattr(serving, "similar_items", broken)
    Interaction.objects.create(product=small_catalog["cousin"], kind="purchase", session_key="s")
    ids = _ids(_render("{% similar_items product %}", product=small_catalog["anchor"]))
    assert ids[0] == small_catalog["cousin"].pk  # popular in the same category


def test_total_failure_renders_nothing(small_catalog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(serving, "similar_items", broken)
    monkeypatch.setattr(serving, "popular", broken)
    assert _render("{% similar_items product %}", product=small_catalog["anchor"]).strip() == ""


def test_product_page_shows_the_three_widgets_and_records_a_view(client, small_catalog):
    anchor = small_catalog["anchor"]
    client.get(f"/product/{small_catalog['other0'].pk}/")  # something viewed before
    response = client.get(f"/product/{anchor.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    # one page, no repeats: "recently viewed" keeps the product viewed before, similar items show the other five
    assert _ids(html, "recently-viewed") == [small_catalog["other0"].pk]
    similar = _ids(html, "similar-items")
    assert len(similar) == 5 and small_catalog["other0"].pk not in similar and anchor.pk not in similar
    assert 'data-visrec-widget="for-you"' not in html  # the small catalogue's every product is shown above
    assert Interaction.objects.filter(product=anchor, kind="view").count() == 1


def test_home_shows_for_you_and_links_search_by_photo(client, small_catalog):
    Interaction.objects.create(product=small_catalog["other1"], kind="purchase", session_key="x")
    html = client.get("/").content.decode()
    assert _ids(html, "for-you")[0] == small_catalog["other1"].pk  # cold shopper: trending
    assert 'href="/search/photo/"' in html


def test_product_page_survives_broken_recommendations(client, small_catalog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("everything is down")

    for name in ("similar_items", "for_you", "recently_viewed", "popular"):
        monkeypatch.setattr(serving, name, broken)
    response = client.get(f"/product/{small_catalog['anchor'].pk}/")
    assert response.status_code == 200
    assert small_catalog["anchor"].title in response.content.decode()


def test_home_and_category_pages_list_active_products(client, small_catalog):
    home = client.get("/").content.decode()
    assert small_catalog["anchor"].title in home
    assert f'data-product-id="{small_catalog["inactive"].pk}"' not in home
    category = small_catalog["anchor"].category
    page = client.get(f"/category/{category.slug}/").content.decode()
    assert small_catalog["twin"].title in page
    assert small_catalog["other0"].title not in page


def test_unknown_product_page_is_404(client, db):
    assert client.get("/product/424242/").status_code == 404


@pytest.mark.parametrize("with_reasons", [False, True])
@pytest.mark.parametrize("with_images", [True, False])
def test_fast_list_markup_is_the_templates_byte_for_byte(small_catalog, with_images, with_reasons):
    """The default widget markup is written out in Python for speed; it must equal the template's."""
    from django.template.loader import render_to_string

    from recommendations import serving
    from recommendations.templatetags import visrec as tags

    products = [small_catalog[k] for k in ("anchor", "twin", "cousin")]
    products[0].title = 'Mug <b>"bold"</b> & co'
    if not with_images:
        for p in products:
            p.images.all().delete()
    recs = [serving.Recommendation(p, 0.123456, "visual") for p in products]
    if with_reasons:  # "why this?" lines: a history product (with and without a photo), a filler, what is shared
        url = "/media/a.jpg?v=1&x=<2>" if with_images else None
        recs = [
            serving.Recommendation(
                products[0], 0.5, "session", serving.Because(7, 'Red <i>"x"</i>', url, "add_to_cart")
            ),
            serving.Recommendation(products[1], 0.4, "trending"),
            serving.Recommendation(products[2], 0.3, "visual", shares=("category", "colour")),
        ]
    rec_list = serving.RecommendationList("similar-items", recs, 3, "1", "visual")
    captured = {}
    real = tags._render_list

    def spy(context):
        captured["context"] = context
        return real(context)

    tags._render_list = spy
    try:
        fast = tags.render_widget({"request": None}, rec_list, title='Picks <for> "you"')
    finally:
        tags._render_list = real
    assert fast == render_to_string(tags.LIST_TEMPLATE, captured["context"])
    assert ("<img " in fast) is with_images and "&lt;b&gt;" in fast
    if with_reasons:
        assert "Because you carted" in fast and "Trending now" in fast and "Same category, close colour" in fast
        assert ('alt="Red &lt;i&gt;&quot;x&quot;&lt;/i&gt;"' in fast) is with_images


def test_an_overridden_list_template_is_rendered_by_django(small_catalog, settings, tmp_path):
    from recommendations import serving
    from recommendations.templatetags import visrec as tags

    (tmp_path / "visrec" / "widgets").mkdir(parents=True)
    (tmp_path / "visrec" / "widgets" / "list.html").write_text(
        '<ol data-visrec-widget="{{ widget }}">{% for e in entries %}'
        '<li data-product-id="{{ e.id }}">{{ e.title }}</li>{% endfor %}</ol>'
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path), *settings.TEMPLATES[0]["DIRS"]]}]
    recs = [serving.Recommendation(small_catalog["twin"], 0.5, "visual")]
    html = tags.render_widget({"request": None}, serving.RecommendationList("for-you", recs, None, None, "visual"))
    assert html.startswith('<ol data-visrec-widget="for-you">') and small_catalog["twin"].title in html
