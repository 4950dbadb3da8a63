"""The product adapter: the one way visrec reads a shop's products.

A shop names its product model and one adapter class in its settings::

    VISREC_PRODUCT_MODEL = "shop.Product"            # int or UUID primary key
    VISREC_PRODUCT_ADAPTER = "shop.visrec.ShopAdapter"

The adapter subclasses :class:`ProductAdapter` and answers, for one product of that
model, what visrec needs to know: title, URL, price, availability, category (with its
ancestors where the shop has a tree) and images (a stable identity, a version that
changes when the file changes, and a way to open the file). visrec copies these answers
into its own tables (``recommendations.sync``) whenever one of the :meth:`watched`
models changes, and never reads or writes a shop column otherwise.

Only :meth:`ProductAdapter.images` has no useful default; every other method falls back
to the attribute names most shops use (``title``, ``get_absolute_url()``, ``price``...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from django.db import models

#: Product primary keys are ints or UUIDs (or anything the model's pk field accepts).
ProductKey = Any


@dataclass(frozen=True)
class CategoryRecord:
    """A category as visrec sees it.

    ``path`` lists the ids of the category's ancestors, root first, ending with its own
    id, so a rule on a parent category reaches the products of its sub-categories.
    """

    id: int
    name: str
    path: tuple[int, ...] = ()

    @property
    def ancestor_ids(self) -> tuple[int, ...]:
        """The category's own id and its ancestors' (``path``, or just ``id``)."""
        return self.path or (self.id,)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a product.

    ``key`` identifies the image for as long as it exists (``"<pk>"`` of the shop's image
    row is typical) and is unique within its product; ``version`` changes whenever the
    file changes (the file name, or a modification time): visrec embeds an image again
    when either is new. ``file`` is what :meth:`ProductAdapter.open_image` opens (a
    ``FieldFile`` by default); it takes no part in comparisons. ``problem``: the shop
    already knows the image is unusable (e.g. its import failed); visrec marks it failed
    with that reason instead of trying to embed it.
    """

    key: str
    version: str
    url: str = ""
    is_primary: bool = False
    position: int = 0
    problem: str = ""
    file: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProductRecord:
    """What visrec keeps of one product (copied into its own ``ProductSnapshot`` table)."""

    pk: ProductKey
    title: str
    url: str = ""
    sku: str = ""
    price: Decimal | None = None
    currency: str = ""
    active: bool = True
    in_stock: bool = True
    recommendable: bool = True
    category: CategoryRecord | None = None
    images: tuple[ImageRecord, ...] = ()

    @property
    def primary_image(self) -> ImageRecord | None:
        """The image lists show: the primary one, else the first by position."""
        if not self.images:
            return None
        primary = [i for i in self.images if i.is_primary]
        return primary[0] if primary else min(self.images, key=lambda i: i.position)


#: A watched model's instance → the primary keys of the products it changes.
ProductsOf = Callable[[models.Model], Iterable[ProductKey]]


class ProductAdapter:
    """Tells visrec about the shop's products; subclass it and name it in ``VISREC_PRODUCT_ADAPTER``.

    Every method takes instances of ``VISREC_PRODUCT_MODEL`` (``self.model``). Methods
    are called in bulk from workers and management commands; :meth:`prefetch` lets an
    adapter add the ``select_related`` / ``prefetch_related`` its other methods rely on.
    """

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model

    # -- which products --------------------------------------------------------------

    def recommendable_queryset(self) -> models.QuerySet:
        """Products visrec may recommend (e.g. parents and standalone products, never a bare variant).

        Availability (:meth:`is_active`, :meth:`in_stock`) is checked on top; this is
        about what a product *is*. Default: every product.
        """
        return self.model._default_manager.all()

    def prefetch(self, queryset: models.QuerySet) -> models.QuerySet:
        """``queryset`` with what :meth:`describe` reads fetched in bulk. Default: unchanged."""
        return queryset

    def recommendable_pk(self, product: models.Model) -> ProductKey | None:
        """The product a shopper event on ``product`` counts for (a variant → its parent), or None.

        Events recorded through :func:`recommendations.events.record` go through it.
        Default: the product itself.
        """
        return product.pk

    # -- what a product is -----------------------------------------------------------

    def title(self, product: models.Model) -> str:
        """Name shown on cards. Default: ``product.title``, else ``str(product)``."""
        return str(getattr(product, "title", "") or product)

    def sku(self, product: models.Model) -> str:
        """The shop's reference code (shown in the API and admin). Default: ``product.sku`` or ``""``."""
        return str(getattr(product, "sku", "") or "")

    def url(self, product: models.Model) -> str:
        """The product page's URL. Default: ``product.get_absolute_url()`` or ``""``."""
        get = getattr(product, "get_absolute_url", None)
        return get() if get else ""

    def price(self, product: models.Model) -> Decimal | None:
        """Price shown on cards (None: unknown). Default: ``product.price`` when present."""
        return getattr(product, "price", None)

    def currency(self, product: models.Model) -> str:
        """ISO code of :meth:`price`. Default: ``product.currency`` when present."""
        return getattr(product, "currency", "") or ""

    def is_active(self, product: models.Model) -> bool:
        """Whether the shop shows the product at all. Default: ``product.is_active`` (True when absent)."""
        return bool(getattr(product, "is_active", True))

    def in_stock(self, product: models.Model) -> bool:
        """Whether it can be bought now. Default: True."""
        return True

    def category(self, product: models.Model) -> CategoryRecord | None:
        """The product's category. Default: none."""
        return None

    def images(self, product: models.Model) -> list[ImageRecord]:
        """The product's images; override it (the default has none, so nothing gets embedded)."""
        return []

    def open_image(self, image: ImageRecord) -> IO[bytes]:
        """A binary file object of ``image`` (closed by the caller). Default: ``image.file.open("rb")``."""
        if image.file is None:
            raise FileNotFoundError(f"image {image.key} has no file")
        image.file.open("rb")
        return image.file

    def describe(self, product: models.Model, recommendable: bool = True) -> ProductRecord:
        """One product as a :class:`ProductRecord` (built from the methods above)."""
        return ProductRecord(
            pk=product.pk,
            title=self.title(product),
            url=self.url(product),
            sku=self.sku(product),
            price=self.price(product),
            currency=self.currency(product),
            active=self.is_active(product),
            in_stock=self.in_stock(product),
            recommendable=recommendable,
            category=self.category(product),
            images=tuple(self.images(product)),
        )

    # -- categories ------------------------------------------------------------------

    def categories(self) -> Iterable[CategoryRecord]:
        """Every category, for the admin's rules (pick a category to boost or exclude). Default: none."""
        return ()

    # -- keeping visrec in step ------------------------------------------------------

    def watched(self) -> dict[type[models.Model], ProductsOf]:
        """Shop models whose saves and deletes change products visrec knows.

        Maps each model to a function from one of its instances to the affected product
        keys. visrec connects ``post_save`` / ``post_delete`` of each (with a
        ``dispatch_uid``) and re-syncs those products after the transaction commits.
        Default: the product model itself.
        """
        return {self.model: lambda product: [product.pk]}

    # -- optional shop hooks ---------------------------------------------------------

    def connect(self) -> None:
        """Connect the shop's own signals that feed visrec's events; called once from ``AppConfig.ready()``.

        Use ``dispatch_uid`` so a second call connects nothing twice. Default: nothing
        (a shop without such signals records events with :mod:`recommendations.events`).
        """

    def import_url(self, request) -> str | None:
        """URL of the shop's page that imports products, when ``request.user`` may use it (the cockpit links it)."""
        return None


def describe_all(adapter: ProductAdapter, pks: Iterable[ProductKey]) -> Iterator[ProductRecord]:
    """Records of the products ``pks`` that still exist, recommendable or not, fetched in bulk."""
    pks = list(pks)
    recommendable = set(adapter.recommendable_queryset().filter(pk__in=pks).values_list("pk", flat=True))
    for product in adapter.prefetch(adapter.model._default_manager.filter(pk__in=pks)):
        yield adapter.describe(product, recommendable=product.pk in recommendable)
