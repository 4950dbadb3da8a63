"""Cards: the snapshot columns a list query selects and the instances built from its rows."""

from __future__ import annotations

from django.db import connection

from ..models import ProductSnapshot


def products_from_rows(rows: list[tuple], names: list[str]) -> list:
    """Cards of query rows with columns ``names`` (see :func:`raw_products`)."""
    Product = ProductSnapshot
    attnames = {f.column: f.attname for f in Product._meta.concrete_fields}
    fields = [i for i, name in enumerate(names) if name in attnames]
    extra = [(i, name) for i, name in enumerate(names) if name not in attnames]
    order = {f.attname: n for n, f in enumerate(Product._meta.concrete_fields)}
    fields.sort(key=lambda i: order[attnames[names[i]]])
    field_names = [attnames[names[i]] for i in fields]
    # the primary's, also for rows read on a replica: a deferred field read later, outside the serving read, comes
    # from the primary (no replica failover applies there)
    db = connection.alias
    products = []
    for row in rows:
        product = Product.from_db(db, field_names, [row[i] for i in fields])
        for i, name in extra:
            setattr(product, name, row[i])
        products.append(product)
    return products


def product_image_url(product) -> str | None:
    """The primary image URL of a card (a :class:`~recommendations.models.ProductSnapshot`)."""
    return product.primary_image_url


#: Snapshot fields a card never shows; list queries leave them out (deferred on the instances).
CARD_DEFERRED = ("category_path", "updated_at")


def _card_fields() -> list:
    """The snapshot fields a list query selects (all but ``CARD_DEFERRED``; the primary key first)."""
    return [f for f in ProductSnapshot._meta.concrete_fields if f.name not in CARD_DEFERRED]
