"""What the drill reads from and writes to the shop's database (Django, in the drill's own process).

The drill sets Django up with the stack's environment once PostgreSQL runs; every
method closes a connection the server dropped (a PostgreSQL fault) before its query.
"""

from __future__ import annotations

import datetime
import os
import sys

from _drill_stack import ROOT


class ShopDatabase:
    """The queries of the drill: its users, products, task runs, images and events."""

    def __init__(self, env: dict[str, str]) -> None:
        os.environ.update({k: v for k, v in env.items() if k not in ("TMPDIR",)})
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()

    @staticmethod
    def _fresh() -> None:
        from django.db import close_old_connections, connection

        close_old_connections()
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            connection.close()

    def now(self) -> datetime.datetime:
        from django.utils import timezone

        return timezone.now()

    # -- set-up -----------------------------------------------------------------------------
    def ensure_users(self, password: str) -> str:
        """The owner (superuser ``drill-owner``) and the shop's server client; the client's token."""
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        self._fresh()
        User = get_user_model()
        owner = User.objects.filter(username="drill-owner").first() or User.objects.create_superuser(
            "drill-owner", "owner@example.com", password
        )
        owner.set_password(password)
        owner.save()
        client, _ = User.objects.get_or_create(username="drill-shop-server")
        token, _ = Token.objects.get_or_create(user=client)
        return token.key

    def product_ids(self) -> list[int]:
        from catalog.models import Product

        self._fresh()
        return list(Product.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))

    def embed_batch_size(self) -> int:
        from recommendations.conf import visrec_settings

        return int(visrec_settings.EMBED_BATCH_SIZE)

    # -- during the drill -------------------------------------------------------------------
    def image_states(self, sku_prefix: str) -> tuple[int, int]:
        """Images of products whose SKU starts with ``sku_prefix``: (ready, pending)."""
        from recommendations.models import ImageState

        self._fresh()
        states = ImageState.objects.filter(product__sku__startswith=sku_prefix)
        return states.filter(status="ready").count(), states.filter(status="pending").count()

    def run_since(self, kind: str, since, statuses: tuple[str, ...] | None) -> int | None:
        from recommendations.models import TaskRun

        self._fresh()
        runs = TaskRun.objects.filter(kind=kind, created_at__gte=since)
        if statuses:
            runs = runs.filter(status__in=statuses)
        return runs.order_by("created_at").values_list("pk", flat=True).first()

    def run_status(self, pk: int | None) -> str | None:
        from recommendations.models import TaskRun

        self._fresh()
        return TaskRun.objects.filter(pk=pk).values_list("status", flat=True).first()

    # -- at the end -------------------------------------------------------------------------
    def runs(self) -> list[dict]:
        """Every TaskRun: id, kind, status, message."""
        from recommendations.models import TaskRun

        self._fresh()
        return list(TaskRun.objects.order_by("pk").values("pk", "kind", "status", "message", "created_at"))

    def unfinished_runs(self) -> int:
        from recommendations.models import TaskRun

        self._fresh()
        return TaskRun.objects.filter(status__in=[TaskRun.QUEUED, TaskRun.RUNNING]).count()

    def stored_event_ids(self, prefix: str) -> list[str]:
        """The client event ids (``id``) of stored interactions whose id starts with ``prefix``."""
        from recommendations.models import Interaction

        self._fresh()
        keys = Interaction.objects.filter(event_key__contains=f":{prefix}").values_list("event_key", flat=True)
        return [key.rsplit(":", 1)[1] for key in keys]

    def close(self) -> None:
        from django.db import connections

        connections.close_all()
