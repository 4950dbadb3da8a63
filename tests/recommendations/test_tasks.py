"""Celery tasks run in-process (``.apply``) and the embed command."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from recommendations import tasks
from recommendations.models import ImageEmbedding, ImageState

pytestmark = pytest.mark.django_db


def test_embed_images_task_is_idempotent(product_with_image):
    image = product_with_image().visrec_images.get()
    first = tasks.embed_images.apply(args=([image.pk],)).get()
    again = tasks.embed_images.apply(args=([image.pk],)).get()
    assert first["embedded"] == 1 and again == {"embedded": 0, "reused": 0, "failed": 0, "skipped": 1}
    assert ImageEmbedding.objects.filter(image=image).count() == 1


def test_embed_images_task_with_unknown_ids_does_nothing(db):
    assert tasks.embed_images.apply(args=([987654],)).get()["skipped"] == 1
    assert tasks.embed_images.apply(args=([],)).get() == {"embedded": 0}


def test_sweep_requeues_only_stale_images(product_with_image, monkeypatch):
    stale = product_with_image().visrec_images.get()
    fresh = product_with_image().visrec_images.get()
    ImageState.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    sent = []
    monkeypatch.setattr(tasks.embed_images, "delay", lambda ids, **run: sent.append(ids))
    assert tasks.embed_missing.apply().get() == {"queued": 1}
    assert sent == [[stale.pk]] and fresh.pk not in sent[0]


def test_on_commit_queues_the_new_image(product_with_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        product = product_with_image()
    assert product.visrec_images.get().status == "ready"  # eager Celery ran the task after commit


def test_visrec_embed_command_reports_speed_and_failures(product_with_image):
    product_with_image()
    product_with_image(image=b"not an image", filename="bad.jpg")
    out = StringIO()
    call_command("visrec_embed", "--missing", stdout=out)
    text = out.getvalue()
    assert "Embedded 1" in text and "failed 1" in text and "images/s" in text and "not a supported image" in text
    out = StringIO()
    call_command("visrec_embed", "--missing", stdout=out)
    assert "Nothing to embed" in out.getvalue()
