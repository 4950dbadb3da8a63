"""Shop pages: home grid, category listing, product detail, search by photo, tracked clicks.

The product page survives a database outage: the product is served from a cached
copy, navigation from the last good category list, and the recommendation widgets
fall back on their own (see ``recommendations.templatetags.visrec``).
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_http_methods

from recommendations import serving
from recommendations.conf import visrec_settings
from recommendations.templatetags.visrec import render_widget, shopper
from recommendations.uploads import guard_upload
from recommendations.views import shopper_session_key

from . import services
from .models import PRIMARY_FILE, Category, Product, ProductImage

logger = logging.getLogger(__name__)
PAGE_SIZE = 24
PAGE_CACHE_SECONDS = 7 * 24 * 3600
NAV_KEY = "shop:nav-categories"


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _cache_call(method: str, *args):
    try:
        return getattr(cache, method)(*args)
    except Exception:
        logger.warning("cache unavailable", exc_info=True)
        return None


NAV_LOCAL_SECONDS = 30.0
PAGE_COPY_SECONDS = 60.0
_nav_local: dict[str, tuple] = {}  # cache namespace -> (when read, top-level categories, their html, all by id)
_page_copies: dict[int, float] = {}  # product pk -> when this process last stored its cached copy


def nav_categories() -> list[Category]:
    """Top-level categories for the header; the last good list while the database is down.

    Read at most every ``NAV_LOCAL_SECONDS`` per process (every page shows them), and the
    last good copy is written to the cache when they are read.
    """
    return _navigation()[0]


def nav_html() -> str:
    """The header's category links, rendered once per refresh of :func:`nav_categories` (every page shows them)."""
    return _navigation()[1]


def _navigation() -> tuple[list[Category], str, dict[int, Category]]:
    """Top-level categories, their rendered links, and every category by id (kept per process)."""
    scope = str(visrec_settings.CACHE_PREFIX)
    now = time.monotonic()
    local = _nav_local.get(scope)
    if local is not None and now - local[0] < NAV_LOCAL_SECONDS:
        return local[1:]
    try:
        every = {c.pk: c for c in Category.objects.all()}
    except DatabaseError:
        logger.warning("categories unavailable; using the cached navigation", exc_info=True)
        cached = _cache_call("get", NAV_KEY) or []
        return cached, render_to_string("shop/_nav.html", {"nav_categories": cached}), {}
    found = [c for c in every.values() if c.parent_id is None]
    _cache_call("set", NAV_KEY, found, PAGE_CACHE_SECONDS)
    html = render_to_string("shop/_nav.html", {"nav_categories": found})
    _nav_local.clear()
    _nav_local[scope] = (now, found, html, every)
    return found, html, every


def home(request):
    shopper_session_key(request)
    products = Product.objects.active().with_primary_image().order_by("-created_at", "pk")
    return render(request, "shop/home.html", {"page": _page(request, products)})


def category(request, slug: str):
    cat = get_object_or_404(Category, slug=slug)
    products = Product.objects.active().filter(category__in=[cat, *cat.children.all()]).with_primary_image()
    return render(request, "shop/category.html", {"category": cat, "page": _page(request, products)})


def _product_for_page(pk: int) -> Product | None:
    """The active product (with category and images), or its cached copy if the database fails.

    Raises ``Http404`` for an unknown product; None when neither source has it.
    """
    key = f"shop:product-page:{pk}"
    try:
        product = _active_product(pk)
    except DatabaseError:
        logger.warning("product unavailable; serving the cached copy", exc_info=True, extra={"product_id": pk})
        return _cache_call("get", key)
    now = time.monotonic()
    if now - _page_copies.get(pk, -PAGE_COPY_SECONDS) >= PAGE_COPY_SECONDS:  # refreshed at most every minute
        _cache_call("set", key, product, PAGE_CACHE_SECONDS)
        if len(_page_copies) > 10_000:
            _page_copies.clear()
        _page_copies[pk] = now
    return product


def _product_row(pk: int) -> Product | None:
    """The active product ``pk`` with its primary image's file name (``PRIMARY_FILE``), in one query."""
    fields = Product._meta.concrete_fields
    image = ProductImage._meta.db_table
    sql = (
        f"SELECT {', '.join('p.' + connection.ops.quote_name(f.column) for f in fields)}, "
        f"(SELECT i.file FROM {image} i WHERE i.product_id = p.id "
        f"ORDER BY i.is_primary DESC, i.position, i.id LIMIT 1) "
        f"FROM {Product._meta.db_table} p WHERE p.id = %s AND p.is_active"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [int(pk)])
        row = cursor.fetchone()
    if row is None:
        return None
    product = Product.from_db(connection.alias, [f.attname for f in fields], row[:-1])
    product.__dict__[PRIMARY_FILE] = row[-1] or ""
    return product


def _active_product(pk: int) -> Product:
    """The active product ``pk`` with its primary image file and its category (one query; raises ``Http404``).

    Written out rather than built by the ORM, which costs more than the query on a page
    every shopper sees; the category comes from the per-process copy of the categories
    when it is there.
    """
    product = _product_row(pk)
    if product is None:
        raise Http404("No product matches the given query.")
    if product.category_id is not None:
        category = _navigation()[2].get(product.category_id)
        product.category = category if category is not None else Category.objects.get(pk=product.category_id)
    return product


def product_detail(request, pk: int):
    product = _product_for_page(pk)
    if product is None:
        return render(request, "shop/unavailable.html", {}, status=503)
    _record(request, product, "view", "product-page")
    return render(request, "shop/product.html", {"product": product})


def _record(request, product: Product, kind: str, source: str) -> None:
    """A shopper action is an interaction; failing to record it never breaks the page."""
    session_key = shopper_session_key(request)
    user, _ = shopper(request)
    try:
        services.record_interaction(product, kind, user=user, session_key=session_key or "", source=source)
    except Exception:
        logger.warning("could not record a %s", kind, exc_info=True, extra={"product_id": product.pk})


def _search_page(request, status: int, error: str = "", selected: str = ""):
    context = {"categories": nav_categories(), "results": "", "error": error, "selected": selected}
    return render(request, "shop/search_by_photo.html", context, status=status)


@guard_upload("search", refused=_search_page)  # the API's search throttle, and the body limit before it is read
@require_http_methods(["GET", "POST"])
def search_by_photo(request):
    """Upload or drop a photo; the nearest products, optionally within a category."""
    categories = nav_categories()
    context = {
        "categories": categories,
        "results": "",
        "error": "",
        "selected": request.POST.get("category", ""),
    }
    status = 200
    if request.method == "POST":
        status, context = _search(request, context)
    response = render(request, "shop/search_by_photo.html", context, status=status)
    if status == 429:
        response["Retry-After"] = "1"
    return response


def _search(request, context: dict) -> tuple[int, dict]:
    upload = request.FILES.get("photo")
    if upload is None:
        return 400, {**context, "error": "Choose a photo (JPEG, PNG, WebP, GIF, BMP or TIFF) to search with."}
    category = None
    if context["selected"]:
        category = next((c for c in context["categories"] if str(c.pk) == context["selected"]), None)
        if category is None:
            return 400, {**context, "error": "Unknown category."}
    try:
        rec_list = serving.search_by_image(upload, limit=12, category=category)
    except serving.InvalidImage as e:
        return 400, {**context, "error": f"This file cannot be used: {e}."}
    except serving.SearchBusy as e:
        return 429, {**context, "error": str(e)}
    except Exception:
        logger.exception("search by photo failed")
        return 503, {**context, "error": "Search by photo is unavailable right now; please try again shortly."}
    html = render_widget({"request": request}, rec_list)
    return 200, {**context, "results": html, "searched": True}
