"""Fresh lists: a product that gets its vector shows in its visual neighbours' similar-items lists at once.

The HNSW index finds a new vector as soon as it is committed, but similar-items lists are
cached for ``LIST_CACHE_SECONDS`` per anchor product (``similar``). When vectors are
stored (``embedding``, on the worker), the lists of each new product's
``FRESH_NEIGHBOURS`` nearest products, and its own, are dropped from the cache (their
product versions bumped), so the next view of a neighbour ranks the new product in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import DatabaseError, connection, transaction

from ..conf import visrec_settings
from ..models import EmbeddingModel
from .keys import bump_product_versions
from .vectors import _names, _search_settings, _set_locally, anchor_sql, pk_array

logger = logging.getLogger(__name__)


def products_near(product_ids: Iterable, model: EmbeddingModel, k: int) -> set:
    """The products whose primary image is among the ``k`` nearest to each of ``product_ids``' (``model``'s vectors).

    One query: an HNSW scan per product (a ``LATERAL`` join), under the serving search
    settings but without the widgets' time budget (this runs on a worker).
    """
    ids = list(product_ids)
    if not ids or k <= 0:
        return set()
    n, dims = _names(), int(model.dimensions)
    sql = (
        f"SELECT DISTINCT near.product_id FROM unnest(%s::{n.pk_type}[]) AS fresh(product_id) "
        f"CROSS JOIN LATERAL (SELECT {n.img}.{n.img_product} AS product_id FROM {n.emb} "
        f"JOIN {n.img} ON {n.img}.{n.img_pk} = {n.emb}.{n.emb_image} "
        f"WHERE {n.emb}.{n.emb_model} = {int(model.pk)} AND {n.img}.{n.img_primary} "
        f"ORDER BY {n.emb}.{n.emb_vector}::halfvec({dims}) <=> {anchor_sql('fresh.product_id', model)} "
        f"LIMIT {int(k)}) near"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        ef = max(int(k), int(visrec_settings.HNSW_EF_SEARCH))
        pairs = [pair for pair in _search_settings(cursor, ef) if pair[0] != "statement_timeout"]
        cursor.execute(*_set_locally(pairs))
        cursor.execute(sql, [pk_array(ids)])
        return {row[0] for row in cursor.fetchall()}


def refresh_lists_near(product_ids: Iterable, model: EmbeddingModel) -> int:
    """Drop the cached similar-items lists that products ``product_ids`` (just embedded by ``model``) belong in.

    Only the serving (active) version's vectors matter: a version still being built serves
    nothing yet, and its activation changes every list's key anyway. Never raises: a
    failed neighbour query leaves the lists to expire. Returns how many lists were dropped.
    """
    ids = set(product_ids)
    if not ids or not EmbeddingModel.objects.filter(pk=model.pk, is_active=True).exists():
        return 0
    try:
        ids |= products_near(ids, model, int(visrec_settings.FRESH_NEIGHBOURS))
    except DatabaseError:
        logger.warning("could not find the neighbours of new vectors; their cached lists expire", exc_info=True)
    bump_product_versions(ids)
    return len(ids)
