"""Signal handlers: new images are queued for embedding; product changes invalidate cached lists."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from .conf import get_image_model, get_product_model, visrec_settings
from .models import EmbeddingModel, ModelVersion, Rule, SimilarityJudgement


def _queue_pending_image(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if raw or not visrec_settings.AUTO_EMBED:
        return
    if instance.status == sender.Status.PENDING and instance.file:
        from .tasks import enqueue_embedding

        enqueue_embedding([instance.pk])


post_save.connect(_queue_pending_image, sender=get_image_model(), dispatch_uid="visrec_queue_pending_image")


def _bump_product(sender, instance, **kwargs) -> None:
    """A product (or one of its images) changed: lists anchored on it are recomputed."""
    from .serving import bump_product_version

    bump_product_version(instance.pk if sender is get_product_model() else instance.product_id)


def _forget_active(sender, instance, **kwargs) -> None:
    from .serving import forget_active

    forget_active()


for _signal in (post_save, post_delete):
    _signal.connect(_bump_product, sender=get_product_model(), dispatch_uid=f"visrec_bump_product_{_signal}")
    _signal.connect(_bump_product, sender=get_image_model(), dispatch_uid=f"visrec_bump_image_{_signal}")
    _signal.connect(_forget_active, sender=EmbeddingModel, dispatch_uid=f"visrec_forget_embedding_{_signal}")
    _signal.connect(_forget_active, sender=ModelVersion, dispatch_uid=f"visrec_forget_version_{_signal}")


def _bump_merch(sender, instance, **kwargs) -> None:
    """A rule or similar-items judgement changed: every process reloads them within seconds."""
    from .rules import bump_merch_version

    bump_merch_version()


for _signal in (post_save, post_delete):
    for _model in (Rule, SimilarityJudgement):
        _signal.connect(_bump_merch, sender=_model, dispatch_uid=f"visrec_bump_merch_{_model.__name__}_{_signal}")
