"""Signal handlers: the shop's changes reach visrec's copy; changes invalidate cached lists.

The adapter's :meth:`~recommendations.adapters.ProductAdapter.watched` models are
connected in ``AppConfig.ready`` (:func:`connect_shop`): a save or delete re-syncs the
products it touches in the same transaction (``recommendations.sync``), which queues new
or changed images for embedding once it commits.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from .models import EmbeddingModel, ModelVersion, Rule, SimilarityJudgement


def _deleting_products(origin) -> bool:
    """Whether a delete started from products (its cascade removes visrec's rows; nothing to sync)."""
    from django.db.models import QuerySet

    from .conf import get_product_model

    model = origin.model if isinstance(origin, QuerySet) else type(origin)
    return origin is not None and issubclass(model, get_product_model())


def _product_changed(products_of):
    def handler(sender, instance, raw: bool = False, origin=None, **kwargs) -> None:
        if raw or _deleting_products(origin):
            return
        from .serving import bump_product_versions
        from .sync import sync_products

        pks = [pk for pk in products_of(instance) if pk is not None]
        if not pks:
            return
        sync_products(pks)
        bump_product_versions(pks)

    return handler


def connect_shop() -> None:
    """Connect ``post_save`` / ``post_delete`` of every model the adapter watches, and the shop's own event signals."""
    from .conf import get_adapter

    adapter = get_adapter()
    adapter.connect()
    for model, products_of in adapter.watched().items():
        handler = _product_changed(products_of)
        for signal in (post_save, post_delete):
            signal.connect(
                handler, sender=model, weak=False, dispatch_uid=f"visrec_sync_{model._meta.label_lower}_{signal}"
            )


def _forget_active(sender, instance, **kwargs) -> None:
    from .serving import forget_active

    forget_active()


for _signal in (post_save, post_delete):
    _signal.connect(_forget_active, sender=EmbeddingModel, dispatch_uid=f"visrec_forget_embedding_{_signal}")
    _signal.connect(_forget_active, sender=ModelVersion, dispatch_uid=f"visrec_forget_version_{_signal}")


def _bump_merch(sender, instance, **kwargs) -> None:
    """A rule or similar-items judgement changed: every process reloads them within seconds."""
    from .rules import bump_merch_version

    bump_merch_version()


for _signal in (post_save, post_delete):
    for _model in (Rule, SimilarityJudgement):
        _signal.connect(_bump_merch, sender=_model, dispatch_uid=f"visrec_bump_merch_{_model.__name__}_{_signal}")

