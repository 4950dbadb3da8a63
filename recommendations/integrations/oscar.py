"""django-oscar behind visrec's product adapter contract, and oscar's signals as shopper events.

Settings of an oscar shop (no forked oscar app)::

    VISREC_PRODUCT_MODEL = "catalogue.Product"
    VISREC_PRODUCT_ADAPTER = "recommendations.integrations.oscar.OscarAdapter"

- **Which products**: parents and standalone products are recommended, a child (a
  variant) never on its own; an event on a child counts for its parent.
- **Images**: oscar's ``ProductImage`` rows (a parent without images of its own shows its
  first child's), ordered by ``display_order``; the first is the primary one.
- **Category**: the product's first public category in oscar's category tree (a child's
  are its parent's), with its ancestors, so a rule on "Clothing" reaches "Clothing > Dresses".
- **Availability**: ``is_public`` and oscar's default purchase strategy (stock records:
  ``fetch_for_product``, or ``fetch_for_parent`` for a parent, which is available when a
  child is); the price and currency come from the same strategy.
- **Events**: ``product_viewed`` → view, ``basket_addition`` → add_to_cart,
  ``order_placed`` → one purchase per order line (quantity as value) for a signed-in
  customer; a guest's order is recorded from ``post_checkout``, which carries the session.

Oscar's classes are reached through ``oscar.core.loading.get_model`` / ``get_class``, so a
shop that forks an oscar app gets its own; nothing here is imported before Django is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal

from django.db import models

from ..adapters import CategoryRecord, ImageRecord, ProductAdapter, ProductKey, ProductsOf

logger = logging.getLogger(__name__)


def _model(app_label: str, name: str) -> type[models.Model]:
    from oscar.core.loading import get_model

    return get_model(app_label, name)


def _strategy():
    """Oscar's default purchase strategy (no request: the prices and stock a visitor sees)."""
    from oscar.core.loading import get_class

    return get_class("partner.strategy", "Selector")().strategy()


class OscarAdapter(ProductAdapter):
    """oscar's ``catalogue.Product``: parents and standalone products, ``ProductImage``, categories, stock."""

    # -- which products --------------------------------------------------------------

    def recommendable_queryset(self) -> models.QuerySet:
        return self.model._default_manager.exclude(structure=self.model.CHILD)

    def prefetch(self, queryset: models.QuerySet) -> models.QuerySet:
        return queryset.select_related("parent", "product_class", "parent__product_class").prefetch_related(
            "images", "categories", "parent__categories", "stockrecords", "children__stockrecords",
            "children__images", "children__product_class",
        )

    def recommendable_pk(self, product: models.Model) -> ProductKey | None:
        return product.parent_id if product.is_child else product.pk

    # -- what a product is -----------------------------------------------------------

    def title(self, product: models.Model) -> str:
        return product.get_title()

    def sku(self, product: models.Model) -> str:
        """Oscar's UPC (the product's own code; stock records carry the partners' SKUs)."""
        return product.upc or ""

    def is_active(self, product: models.Model) -> bool:
        if product.is_child and product.parent is not None and not product.parent.is_public:
            return False
        return bool(product.is_public)

    @staticmethod
    def _purchase_info(product: models.Model):
        """Oscar's ``PurchaseInfo`` (price, availability) of ``product``, computed once per instance."""
        info = getattr(product, "_visrec_purchase_info", None)
        if info is None:
            strategy = _strategy()
            info = strategy.fetch_for_parent(product) if product.is_parent else strategy.fetch_for_product(product)
            product._visrec_purchase_info = info
        return info

    def in_stock(self, product: models.Model) -> bool:
        return bool(self._purchase_info(product).availability.is_available_to_buy)

    def price(self, product: models.Model) -> Decimal | None:
        price = self._purchase_info(product).price
        if not price.exists:
            return None
        return price.incl_tax if price.is_tax_known else price.excl_tax

    def currency(self, product: models.Model) -> str:
        price = self._purchase_info(product).price
        return (price.currency or "") if price.exists else ""

    def category(self, product: models.Model) -> CategoryRecord | None:
        owner = product.parent if product.is_child and product.parent is not None else product
        public = [c for c in owner.categories.all() if c.is_public]
        if not public:
            return None
        category = public[0]
        return CategoryRecord(id=category.pk, name=category.name, path=self._path(category))

    @staticmethod
    def _path(category: models.Model) -> tuple[int, ...]:
        """Ids of ``category``'s ancestors and itself, root first (treebeard's materialised path)."""
        step = category.steplen
        prefixes = [category.path[: step * depth] for depth in range(1, category.depth + 1)]
        by_path = dict(type(category)._default_manager.filter(path__in=prefixes).values_list("path", "pk"))
        return tuple(by_path[p] for p in prefixes if p in by_path)

    def images(self, product: models.Model) -> list[ImageRecord]:
        own = sorted(product.images.all(), key=lambda image: (image.display_order, image.pk))
        if not own and product.is_parent:
            children = sorted(product.children.all(), key=lambda child: child.pk)
            own = next((sorted(c.images.all(), key=lambda i: (i.display_order, i.pk)) for c in children
                        if c.images.all()), [])
        return [self.image_record(image, primary=n == 0) for n, image in enumerate(own) if image.original]

    @staticmethod
    def image_record(image: models.Model, primary: bool = False) -> ImageRecord:
        """One oscar ``ProductImage`` (its pk is the key; its file name the version: a replaced file is new)."""
        return ImageRecord(
            key=str(image.pk),
            version=image.original.name,
            url=image.original.url,
            is_primary=primary,
            position=image.display_order,
            file=image.original,
        )

    # -- categories ------------------------------------------------------------------

    def categories(self) -> Iterable[CategoryRecord]:
        category_model = _model("catalogue", "Category")
        rows = list(category_model._default_manager.order_by("path").values_list("pk", "name", "path", "depth"))
        by_path = {path: pk for pk, _, path, _ in rows}
        step = category_model.steplen
        for pk, name, path, depth in rows:
            ancestors = tuple(by_path[path[: step * d]] for d in range(1, depth + 1) if path[: step * d] in by_path)
            yield CategoryRecord(id=pk, name=name, path=ancestors)

    # -- keeping visrec in step ------------------------------------------------------

    def watched(self) -> dict[type[models.Model], ProductsOf]:
        product_model = self.model

        def product_and_parent(product) -> list[ProductKey]:
            return [pk for pk in (product.pk, product.parent_id) if pk is not None]

        def of_product(row) -> list[ProductKey]:
            parent_id = product_model._default_manager.filter(pk=row.product_id).values_list("parent_id", flat=True)
            return [row.product_id, *[pk for pk in parent_id if pk is not None]]

        def in_category(category) -> Iterable[ProductKey]:
            return product_model._default_manager.filter(categories=category).values_list("pk", flat=True)

        return {
            product_model: product_and_parent,
            _model("catalogue", "ProductImage"): of_product,
            _model("catalogue", "ProductCategory"): lambda row: [row.product_id],
            _model("catalogue", "Category"): in_category,
            _model("partner", "StockRecord"): of_product,
        }

    def connect(self) -> None:
        """Connect oscar's own signals to visrec's events (views, basket additions, orders)."""
        from oscar.core.loading import get_class

        get_class("catalogue.signals", "product_viewed").connect(
            product_viewed, dispatch_uid="visrec_oscar_product_viewed"
        )
        get_class("basket.signals", "basket_addition").connect(
            basket_addition, dispatch_uid="visrec_oscar_basket_addition"
        )
        get_class("order.signals", "order_placed").connect(order_placed, dispatch_uid="visrec_oscar_order_placed")
        get_class("checkout.signals", "post_checkout").connect(
            post_checkout, dispatch_uid="visrec_oscar_post_checkout"
        )


# -- oscar's signals → visrec events ---------------------------------------------------


def _shopper(user, request) -> dict:
    """``user`` / ``session_key`` keyword arguments for an event (a session is created if needed)."""
    if user is not None and getattr(user, "is_authenticated", False):
        return {"user": user}
    session = getattr(request, "session", None)
    if session is None:
        return {}
    if not session.session_key:
        session.save()
    return {"session_key": session.session_key}


def _record(product, kind: str, value: float = 1.0, **shopper) -> None:
    """Record one event; a failure is logged, never raised into oscar's view."""
    from ..events import record

    if not shopper:
        return
    try:
        record(product, kind, value=value, source="oscar", **shopper)
    except Exception:  # an event must never break a page or a checkout
        logger.exception("could not record an oscar %s event", kind, extra={"product": getattr(product, "pk", None)})


def product_viewed(sender, product, user=None, request=None, **kwargs) -> None:
    """A product page of oscar's was shown: a ``view``."""
    _record(product, "view", **_shopper(user, request))


def basket_addition(sender, product, user=None, request=None, **kwargs) -> None:
    """A product went into oscar's basket: an ``add_to_cart``."""
    _record(product, "add_to_cart", **_shopper(user, request))


def _purchases(order, **shopper) -> None:
    for line in order.lines.select_related("product"):
        if line.product is not None:
            _record(line.product, "purchase", value=float(line.quantity), **shopper)


def order_placed(sender, order, user=None, **kwargs) -> None:
    """An order was placed: a ``purchase`` per line, for a signed-in customer (guests: :func:`post_checkout`)."""
    customer = order.user if order.user_id else user
    if customer is not None and getattr(customer, "is_authenticated", False):
        _purchases(order, user=customer)


def post_checkout(sender, order, user=None, request=None, **kwargs) -> None:
    """A guest's checkout finished: its purchases belong to the guest's session."""
    if order.user_id is None and request is not None:
        _purchases(order, **_shopper(None, request))
