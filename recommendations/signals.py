"""Signal handlers: a new or replaced image is queued for embedding after commit."""

from __future__ import annotations

from django.db.models.signals import post_save

from .conf import get_image_model, visrec_settings


def _queue_pending_image(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if raw or not visrec_settings.AUTO_EMBED:
        return
    if instance.status == sender.Status.PENDING and instance.file:
        from .tasks import enqueue_embedding

        enqueue_embedding([instance.pk])


post_save.connect(_queue_pending_image, sender=get_image_model(), dispatch_uid="visrec_queue_pending_image")
