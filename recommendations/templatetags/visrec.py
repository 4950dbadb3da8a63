"""Template tags of the widgets: ``similar_items``, ``complete_the_look``, ``for_you``, ``recently_viewed``.

Each tag asks :mod:`recommendations.serving` for a list, records an impression
(asynchronously) and renders a partial template whose links carry signed click
tokens. A widget never breaks the page: if its backend fails it renders popular
products (while there is time left in its budget), else the last good popular list
from the cache, else nothing.
"""

from __future__ import annotations

import functools
import html
import logging
import time
from collections.abc import Callable
from pathlib import Path

from django import template
from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string
from django.utils import formats, translation
from django.utils.safestring import mark_safe

from .. import serving, tracking
from ..conf import visrec_settings
from ..rules import rules_for
from ..urlcache import reverse_one

logger = logging.getLogger(__name__)
register = template.Library()

RULE_ARGS = ("max_per_category", "pinned", "blocked", "only_categories", "exclude_categories")
TITLES = {
    "similar-items": "You may also like",
    "for-you": "Recommended for you",
    "recently-viewed": "Recently viewed",
    "search-by-photo": "Products that look like your photo",
    "complete-the-look": "Complete the look",
}


def shopper(request) -> tuple[object | None, str | None]:
    """``(user, session key)`` of a request; an unreadable user (database down) counts as anonymous."""
    if request is None:
        return None, None
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    try:
        user = getattr(request, "user", None)
        if user is not None and not user.is_authenticated:
            user = None
    except Exception:  # the auth middleware's lazy user hits the database
        logger.warning("could not read the request's user; treating the shopper as anonymous", exc_info=True)
        user = None
    return user, session_key


def shopper_history(request, user, session_key) -> serving.History:
    """The shopper's latest events, read once per request (the page's widgets share them)."""
    who = (getattr(user, "pk", None), session_key)
    memo = getattr(request, "_visrec_history", None)
    if memo is None or memo[0] != who:
        memo = (who, serving.history(user, session_key))
        if request is not None:
            request._visrec_history = memo
    return memo[1]


def _ids(value) -> list[int] | None:
    """Product/category ids from an object, an id, a list of either, or "1,2,3"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, int) or hasattr(value, "pk"):
        return [int(getattr(value, "pk", value))]
    return [int(getattr(v, "pk", v)) for v in value]


def never_raises(tag: Callable[..., str]) -> Callable[..., str]:
    """A widget tag that fails (even on bad arguments) renders nothing instead of breaking the page."""

    @functools.wraps(tag)
    def wrapper(*args, **kwargs) -> str:
        try:
            return tag(*args, **kwargs)
        except Exception:
            logger.exception("%s widget could not render", tag.__name__)
            return ""

    return wrapper


def tag_rules(widget: str, options: dict):
    """The widget's rules with the tag's overrides (``max_per_category=2 pinned="3,4"``)."""
    overrides = {name: options.get(name) for name in RULE_ARGS if options.get(name) is not None}
    for name in ("pinned", "blocked", "only_categories", "exclude_categories"):
        if name in overrides:
            overrides[name] = _ids(overrides[name])
    return rules_for(widget, **overrides)


def _safely(widget: str, limit: int, compute: Callable, fallback: Callable, exclude=()) -> serving.RecommendationList:
    budget = float(visrec_settings.WIDGET_TIME_BUDGET_MS) / 1000.0
    started = time.perf_counter()
    try:
        result = compute()
    except Exception:
        logger.exception("%s widget failed; rendering a fallback", widget)
        result = None
    elapsed = time.perf_counter() - started
    if elapsed > budget:
        logger.warning("%s widget over its time budget (%.0f ms)", widget, elapsed * 1000)
    if result is not None:
        try:
            serving.remember_popular_if_stale()  # so a later outage has something to show
        except Exception:
            logger.warning("could not refresh the fallback list", exc_info=True)
        return result
    if elapsed <= budget:
        try:
            items = fallback()
            return serving.RecommendationList(widget, items, None, None, "popular" if items else "empty")
        except Exception:
            logger.exception("%s widget fallback failed; using the cached popular list", widget)
    return serving.fallback_list(widget, limit, exclude)


def render_widget(context, rec_list: serving.RecommendationList, title: str | None = None) -> str:
    """Record the impression and render the list with click-tracked links (empty: nothing).

    Each entry carries its display strings ready-made (``id``, ``title``, ``price``,
    ``image_url``, ``score``, ``url``; "why this?": ``why``, ``why_text`` and ``because``,
    the shopper's own product behind a "for you" item) besides ``rec`` and ``product``
    for templates that want more: resolving model attributes, localising prices and building image URLs in
    the template costs more than the rest of the widget. The template gets ``request``
    but no context processors (the widget needs none; they would run once per widget).
    """
    if not rec_list.items:
        return ""
    request = context.get("request")
    user, session_key = shopper(request)
    impression = tracking.record_impression(rec_list, user=user, session_key=session_key)
    language = translation.get_language()
    entries = []
    for position, rec in enumerate(rec_list.items):
        product = rec.product
        token = tracking.click_token(
            impression,
            product.pk,
            position,
            widget=rec_list.widget,
            model_version_id=rec_list.model_version_id,
            user=user,
            session_key=session_key or "",
        )
        entries.append(
            {
                "rec": rec,
                "product": product,
                "position": position,
                "url": click_url(token),
                "id": product.pk,
                "title": product.title,
                "price": _price_text(product.price, product.currency, language),
                "image_url": serving.product_image_url(product),
                "score": f"{rec.score:.4f}",
                "because": rec.because,
                "why": serving.why(rec_list.widget, rec),
                "why_text": serving.why_text(rec_list.widget, rec),
            }
        )
    context = {
        "widget": rec_list.widget,
        "title": title or TITLES.get(rec_list.widget, "Recommended"),
        "entries": entries,
        "impression": impression,
        "source": rec_list.source,
        "request": request,
    }
    if _default_list_template():
        return _render_list(context)
    return render_to_string(LIST_TEMPLATE, context)


LIST_TEMPLATE = "visrec/widgets/list.html"
_DEFAULT_LIST = (Path(__file__).resolve().parent.parent / "templates" / LIST_TEMPLATE).resolve()


def _default_list_template() -> bool:
    """Whether ``visrec/widgets/list.html`` is the plugin's own (not overridden by the shop)."""
    try:
        origin = get_template(LIST_TEMPLATE).origin.name
    except TemplateDoesNotExist:
        return False
    return _is_default_list(origin)


@functools.lru_cache(maxsize=64)
def _is_default_list(origin: str | None) -> bool:
    """Whether a template file is the plugin's own list (remembered: resolving a path is a system call per folder)."""
    return bool(origin) and Path(origin).resolve() == _DEFAULT_LIST


def _render_list(context: dict) -> str:
    """The plugin's ``visrec/widgets/list.html`` written out in Python: the same markup, byte for byte.

    A page shows three widgets of up to a dozen products; the template engine's per-variable
    work costs more than the rest of the widget. A shop that overrides the template gets its
    template rendered by Django as usual (``_default_list_template``); a test keeps the two
    identical.
    """
    widget, title = _escape(context["widget"]), _escape(context["title"])
    items = []
    for entry in context["entries"]:
        name = _escape(entry["title"])
        image = (
            f'<img src="{_escape(entry["image_url"])}" alt="{name}" loading="lazy" decoding="async" width="200" '
            f'height="200">'
            if entry["image_url"]
            else f'<span class="no-image" role="img" aria-label="{name} (no photo)"></span>'
        )
        items.append(
            f'\n    <li class="product-card" data-product-id="{entry["id"]}" data-position="{entry["position"]}" '
            f'data-reason="{_escape(entry["rec"].reason)}" data-score="{_escape(entry["score"])}">\n'
            f'      <a href="{_escape(entry["url"])}" aria-label="{name}, {_escape(entry["price"])}">\n'
            f"        {image}\n"
            f'        <span class="title">{name}</span>\n'
            f"      </a>\n"
            f'      <span class="price">{_escape(entry["price"])}</span>{_why_markup(entry)}\n'
            f"    </li>\n    "
        )
    return mark_safe(  # noqa: S308 (every value above is escaped)
        f'<section class="visrec-widget" data-visrec-widget="{widget}" '
        f'data-visrec-source="{_escape(context["source"])}" data-impression="{_escape(context["impression"])}" '
        f'aria-labelledby="visrec-{widget}-title">\n'
        f'  <h2 id="visrec-{widget}-title">{title}</h2>\n'
        f'  <ul class="product-grid visrec-list">\n    {"".join(items)}\n  </ul>\n</section>\n'
    )


def _why_markup(entry: dict) -> str:
    """The "why this?" line under a card (the template's ``visrec-why`` paragraph), or ""."""
    if not entry["why_text"]:
        return ""
    because, attrs, thumb = entry["because"], "", ""
    if because is not None:
        attrs = f' data-because="{_escape(because.product_id)}" data-because-event="{_escape(because.event)}"'
        name = _escape(because.title)
        thumb = (
            f' <img src="{_escape(because.image_url)}" alt="{name}" title="{name}" loading="lazy" decoding="async" '
            f'width="40" height="40">'
            if because.image_url
            else f' <span class="because-title">{name}</span>'
        )
    why, text = _escape(entry["why"]), _escape(entry["why_text"])
    return f'\n      <p class="visrec-why" data-why="{why}"{attrs}>{text}{thumb}</p>'


def _escape(value) -> str:
    """``django.utils.html.escape`` without its lazy-string wrapper (the same characters, the same entities)."""
    return html.escape(str(value))


@functools.lru_cache(maxsize=4096)
def _price_text(price, currency: str, language: str | None) -> str:
    """``"19.90 EUR"``, localised as the template's ``{{ price }}`` would be (cached: prices repeat)."""
    return f"{formats.localize(price)} {currency}"


def click_url(token: str) -> str:
    return reverse_one("visrec:click", "token", token)


def _limit(value, default: int) -> int:
    try:
        return max(1, min(int(value), int(visrec_settings.MAX_LIMIT)))
    except (TypeError, ValueError):
        return default


@register.simple_tag(takes_context=True)
@never_raises
def similar_items(context, product, limit: int | None = None, **options) -> str:
    """``{% similar_items product limit=8 %}`` (or ``{% similar_items product 8 %}``).

    Options: ``title``, ``dedupe`` (False: neither leave out nor record the page's
    shown products, see :func:`visrec_page`), and the rules ``max_per_category``,
    ``pinned``, ``blocked``, ``only_categories``, ``exclude_categories`` (ids, lists or "1,2,3").
    """
    category = getattr(product, "category_id", None)
    return _anchored_widget(
        context,
        "similar-items",
        serving.similar_items,
        product,
        _limit(limit if limit is not None else options.get("limit"), int(visrec_settings.SIMILAR_DEFAULT_LIMIT)),
        options,
        lambda n, exclude: serving.popular(n, category=category, exclude=exclude),
    )


@register.simple_tag(takes_context=True)
@never_raises
def complete_the_look(context, product, limit: int | None = None, **options) -> str:
    """``{% complete_the_look product limit=8 %}``: products of other categories that go with ``product``.

    Bought with it where shoppers did, else the compatibility model's partners of its
    picture. Options as :func:`similar_items`'s. Its fallback is popular products of the
    other categories.
    """
    return _anchored_widget(
        context,
        "complete-the-look",
        serving.complete_the_look,
        product,
        _limit(limit if limit is not None else options.get("limit"), int(visrec_settings.COMPLEMENT_DEFAULT_LIMIT)),
        options,
        lambda n, exclude: serving.popular(
            n, exclude=exclude, rules=serving.other_categories(serving.Rules(exclude_interacted_kinds=()), product)
        ),
    )


def _anchored_widget(context, widget: str, serve: Callable, product, n: int, options: dict, fallback) -> str:
    """A widget of products chosen for ``product`` by ``serve(product, n, rules=, user=, session_key=, exclude=)``.

    It leaves out the page's shown products (:func:`visrec_page`) and records its own;
    ``fallback(n, exclude)`` serves when the backend fails.
    """
    user, session_key = shopper(context.get("request"))
    page = _page(context.get("request"), options)
    exclude = [product.pk, *(page.ids() if page else [])]
    rec_list = _safely(
        widget,
        n,
        lambda: serve(
            product, n, rules=tag_rules(widget, options), user=user, session_key=session_key, exclude=exclude[1:]
        ),
        lambda: fallback(n, exclude),
        exclude=exclude,
    )
    if widget == "complete-the-look" and rec_list.source == "cache-fallback":  # the cached list knows no categories
        category = getattr(product, "category_id", None)
        rec_list.items = [r for r in rec_list.items if getattr(r.product, "category_id", None) != category]
    if page:
        page.add([product.pk, *rec_list.product_ids])
    return render_widget(context, rec_list, options.get("title"))


@register.simple_tag(takes_context=True)
@never_raises
def for_you(context, request=None, limit: int | None = None, category=None, **options) -> str:
    """``{% for_you request limit=12 category=product.category %}``: personal recommendations.

    Each item says why it is there: the shopper's own product that drew it in ("Because
    you viewed" and its thumbnail), or "Trending now" / "Popular" for fillers.
    """
    request = request or context.get("request")
    n = _limit(limit if limit is not None else options.get("limit"), int(visrec_settings.FOR_YOU_DEFAULT_LIMIT))
    user, session_key = shopper(request)
    page = _page(request, options)
    exclude = [*(_ids(options.get("exclude")) or []), *(page.ids() if page else [])]
    rules = tag_rules("for-you", options)
    rec_list = _safely(
        "for-you",
        n,
        lambda: serving.for_you(
            user=user,
            session_key=session_key,
            limit=n,
            category=category,
            rules=rules,
            events=shopper_history(request, user, session_key),
            exclude=exclude,
        ),
        lambda: serving.popular(n, exclude=exclude),
        exclude=exclude,
    )
    if page:
        page.add(rec_list.product_ids)
    return render_widget(context, rec_list, options.get("title"))


@register.simple_tag(takes_context=True)
@never_raises
def recently_viewed(context, request=None, limit: int | None = None, exclude=None, **options) -> str:
    """``{% recently_viewed request exclude=product %}``: the shopper's latest products."""
    request = request or context.get("request")
    n = _limit(limit if limit is not None else options.get("limit"), int(visrec_settings.RECENTLY_VIEWED_DEFAULT_LIMIT))
    user, session_key = shopper(request)
    page = _page(request, options)
    skip = [*(_ids(exclude) or []), *(page.ids(keeping=True) if page else [])]
    rec_list = _safely(
        "recently-viewed",
        n,
        lambda: serving.recently_viewed(
            user=user,
            session_key=session_key,
            limit=n,
            exclude=skip,
            events=shopper_history(request, user, session_key),
        ),
        lambda: [],
        exclude=skip,
    )
    if rec_list.source == "cache-fallback":  # popular products are not "recently viewed"
        return ""
    if page:
        page.add(rec_list.product_ids)
    return render_widget(context, rec_list, options.get("title"))


def _page(request, options: dict) -> serving.ShownOnPage | None:
    """The page's shown products for a tag that shares them (None: ``dedupe=False``, or no request)."""
    if _off(options.get("dedupe", True)):
        return None
    return serving.shown_on_page(request)


@register.simple_tag(takes_context=True)
@never_raises
def visrec_page(context, dedupe=None, shown=None, keep_recently_viewed=None) -> str:
    """``{% visrec_page dedupe=False %}``, ``{% visrec_page shown=product keep_recently_viewed=True %}``.

    The page's widget settings, for the tags below it. ``dedupe``: whether a widget leaves
    out what the ones above it showed (default ``PAGE_DEDUPE``). ``shown``: products the
    page shows itself (ids, objects or "1,2,3"). ``keep_recently_viewed``: the "recently
    viewed" widget keeps the shopper's latest products (but those in ``shown``) wherever it
    is on the page (True: ``RECENTLY_VIEWED_DEFAULT_LIMIT`` of them, or the number the
    widget shows); the other widgets leave them out. Renders nothing.
    """
    request = context.get("request")
    page = serving.shown_on_page(request)
    if page is None:
        return ""
    if dedupe is not None:
        page.enabled = not _off(dedupe)
    page.add(_ids(shown) or [])
    if keep_recently_viewed is not None and not _off(keep_recently_viewed):
        default = int(visrec_settings.RECENTLY_VIEWED_DEFAULT_LIMIT)
        n = default if keep_recently_viewed is True else _limit(keep_recently_viewed, default)
        user, session_key = shopper(request)
        page.reserve([pk for pk in shopper_history(request, user, session_key).product_ids if pk not in page][:n])
    return ""


def _off(value) -> bool:
    """Whether a tag argument says no (``False``, ``"false"``, ``0``)."""
    return value in (False, "False", "false", "0", 0)


@register.filter
def product_admin_url(pk) -> str:
    """``{{ product.pk|product_admin_url }}``: the shop's admin page of the product ("" without one)."""
    from django.urls import NoReverseMatch, reverse

    from ..conf import get_product_model

    opts = get_product_model()._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk])
    except NoReverseMatch:
        return ""
