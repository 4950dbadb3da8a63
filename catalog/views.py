"""Shop pages: home grid, category listing and product detail (server-rendered)."""

from __future__ import annotations

import logging

from django.core.paginator import Paginator
from django.db import DatabaseError
from django.shortcuts import get_object_or_404, render

from . import services
from .models import Category, Product

logger = logging.getLogger(__name__)
PAGE_SIZE = 24


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def home(request):
    products = Product.objects.active().with_primary_image().order_by("-created_at", "pk")
    return render(request, "shop/home.html", {"page": _page(request, products)})


def category(request, slug: str):
    cat = get_object_or_404(Category, slug=slug)
    products = Product.objects.active().filter(category__in=[cat, *cat.children.all()]).with_primary_image()
    return render(request, "shop/category.html", {"category": cat, "page": _page(request, products)})


def product_detail(request, pk: int):
    product = get_object_or_404(Product.objects.active().select_related("category").with_primary_image(), pk=pk)
    _record_view(request, product)
    return render(request, "shop/product.html", {"product": product})


def _record_view(request, product: Product) -> None:
    """A product page view is an interaction; failing to record never breaks the page."""
    if not request.session.session_key:
        request.session.save()
    try:
        services.record_interaction(
            product, "view", user=request.user, session_key=request.session.session_key, source="product-page"
        )
    except DatabaseError:
        logger.exception("could not record a product view", extra={"product_id": product.pk})
