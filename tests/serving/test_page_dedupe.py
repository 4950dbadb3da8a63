"""One page, no repeats: the widget tags of a page share the products they show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone

from recommendations.models import Interaction
from tests.serving.conftest import widget_ids

pytestmark = pytest.mark.django_db

WIDGETS = ("similar-items", "for-you", "recently-viewed")


def _request(session_key: str):
    """A request of the anonymous shopper with session ``session_key`` (8 characters or more, as Django wants)."""
    request = RequestFactory().get("/")
    request.session = SessionStore(session_key=session_key)
    request.user = AnonymousUser()
    return request


def _render(source: str, request, **context) -> str:
    return Template("{% load visrec %}" + source).render(Context({"request": request, **context}))


def _viewed(session_key: str, *products) -> None:
    """Views of ``products``, oldest first (the last is the page's product, viewed just now)."""
    now = timezone.now()
    for n, product in enumerate(products):
        Interaction.objects.create(
            product=product, kind="view", session_key=session_key, created_at=now - timedelta(minutes=len(products) - n)
        )


@pytest.fixture
def shop(vector_catalog):
    products, _ = vector_catalog(n=120, in_stock_share=1.0, dims=16, seed=7)
    return products


def test_after_one_view_for_you_no_longer_repeats_the_similar_items(shop):
    # given: the shopper's only event is the view of this product page (the case)
    product = shop[0]
    _viewed("one-view", product)
    page = "{% similar_items product limit=8 %}{% for_you request limit=12 exclude=product %}"
    # when: the page's widgets do not share their products, "for you" (the product's own taste) repeats them all
    apart = _render(
        page.replace("exclude=product", "exclude=product dedupe=False"), _request("one-view"), product=product
    )
    assert set(widget_ids(apart, "similar-items")) <= set(widget_ids(apart, "for-you"))
    # then: sharing them (the default), it ranks further candidates instead, and its list stays full
    html = _render(page, _request("one-view"), product=product)
    similar, for_you = widget_ids(html, "similar-items"), widget_ids(html, "for-you")
    assert len(similar) == 8 and len(for_you) == 12
    assert not set(similar) & set(for_you) and product.pk not in similar + for_you


def test_a_product_page_shows_each_product_once_and_recently_viewed_keeps_the_shoppers_products(shop):
    product, before = shop[0], shop[1:4]
    # the shopper viewed products near this one (so similar items would show them) and then this one
    _viewed("browsing", *before, product)
    page = (
        "{% visrec_page shown=product keep_recently_viewed=True %}{% similar_items product limit=8 %}"
        "{% for_you request limit=12 category=product.category_id exclude=product %}"
        "{% recently_viewed request exclude=product %}"
    )
    html = _render(page, _request("browsing"), product=product)
    shown = {widget: widget_ids(html, widget) for widget in WIDGETS}
    every = [pk for ids in shown.values() for pk in ids]
    assert len(every) == len(set(every)) and product.pk not in every
    assert shown["recently-viewed"] == [p.pk for p in reversed(before)]  # newest first, all kept
    assert len(shown["similar-items"]) == 8 and len(shown["for-you"]) == 12


def test_the_order_of_the_tags_decides_who_keeps_a_product(shop):
    product = shop[0]
    _viewed("order-of-tags", product)
    html = _render(
        "{% for_you request limit=6 exclude=product %}{% similar_items product limit=8 %}",
        _request("order-of-tags"),
        product=product,
    )
    for_you, similar = widget_ids(html, "for-you"), widget_ids(html, "similar-items")
    assert len(for_you) == 6 and len(similar) == 8 and not set(for_you) & set(similar)
    # for you came first and kept the product's nearest neighbours: similar items shows the next ones
    alone = widget_ids(
        _render("{% similar_items product limit=14 %}", _request("order-of-tags"), product=product), "similar-items"
    )
    assert set(for_you) <= set(alone) and similar == [pk for pk in alone if pk not in for_you][:8]


def test_a_page_can_switch_sharing_off(shop):
    product = shop[0]
    _viewed("sharing-off", product)
    page = "{% visrec_page dedupe=False %}{% similar_items product limit=8 %}{% for_you request limit=12 %}"
    html = _render(page, _request("sharing-off"), product=product)
    assert set(widget_ids(html, "similar-items")) <= set(widget_ids(html, "for-you"))


def test_the_registry_keeps_the_order_and_the_reserved_products():
    from recommendations.serving import ShownOnPage

    page = ShownOnPage()
    page.add([3, 1])
    page.reserve([7])
    page.add([1, 2])
    assert page.ids() == [3, 1, 2, 7] and page.ids(keeping=True) == [3, 1, 2]
    assert 1 in page and 7 not in page
    page.enabled = False
    assert page.ids() == [] and page.ids(keeping=True) == []


def test_complete_the_look_leaves_out_what_the_page_shows_and_stays_full(shop):
    product = shop[0]
    alone = widget_ids(
        _render("{% complete_the_look product limit=8 %}", _request("look-1"), product=product), "complete-the-look"
    )
    assert len(alone) == 8
    # when the page already shows its first two partners (given to visrec_page, or by a widget above)
    page = "{% visrec_page shown=shown %}{% complete_the_look product limit=8 %}{% for_you request limit=12 %}"
    html = _render(page, _request("look-2"), product=product, shown=alone[:2])
    look, for_you = widget_ids(html, "complete-the-look"), widget_ids(html, "for-you")
    # then the widget ranks further partners instead, and the widgets below leave out its own
    assert not set(alone[:2]) & set(look) and len(look) == 8
    assert not set(look) & set(for_you)
