"""System checks for misconfiguration (visrec.E001...)."""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.db import connection
from django.db.utils import DatabaseError

from .conf import visrec_settings

MIN_PGVECTOR = (0, 7)


@register(Tags.database)
def check_pgvector(app_configs=None, databases=None, **kwargs) -> list[Error]:
    """visrec.E001/E002: the database must be PostgreSQL with pgvector >= 0.7."""
    if not databases or "default" not in databases:
        return []
    if connection.vendor != "postgresql":
        return [
            Error(
                "visrec needs PostgreSQL with pgvector",
                hint="Set DATABASE_URL to a PostgreSQL server.",
                id="visrec.E001",
            )
        ]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            row = cursor.fetchone()
    except DatabaseError as e:
        return [Error(f"cannot query the database: {e}", id="visrec.E001")]
    if row is None:
        return [
            Error(
                "the pgvector extension is not installed on the database server",
                hint="Install pgvector >= 0.7 on the server, or unset DATABASE_URL to use the embedded PostgreSQL.",
                id="visrec.E001",
            )
        ]
    version = tuple(int(p) for p in row[0].split(".")[:2])
    if version < MIN_PGVECTOR:
        return [Error(f"pgvector {row[0]} is too old", hint="Upgrade pgvector to 0.7 or newer.", id="visrec.E002")]
    return []


@register()
def check_backbone_weights(app_configs=None, **kwargs) -> list[Error]:
    """visrec.E003: the configured backbone's weights must be on this machine."""
    from .ml.backbones import UnknownBackbone, WeightsNotFound, resolve_weights

    name = visrec_settings.BACKBONE
    try:
        resolve_weights(name, (visrec_settings.WEIGHTS or {}).get(name), visrec_settings.WEIGHTS_DIR or None)
    except (WeightsNotFound, UnknownBackbone) as e:
        return [Error(str(e), hint="Set VISREC['BACKBONE'] / VISREC['WEIGHTS'] in settings.", id="visrec.E003")]
    return []


@register()
def check_product_model(app_configs=None, **kwargs) -> list[Error]:
    """visrec.E010/E011: ``VISREC_PRODUCT_MODEL`` names an installed model, ``VISREC_PRODUCT_ADAPTER`` an adapter."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from .conf import get_adapter, get_product_model

    errors = []
    if not hasattr(settings, "VISREC_PRODUCT_MODEL"):
        errors.append(
            Error(
                "VISREC_PRODUCT_MODEL is not set",
                hint="Set VISREC_PRODUCT_MODEL = 'app_label.Model' to the shop's product model.",
                id="visrec.E010",
            )
        )
    try:
        get_product_model()
    except ImproperlyConfigured as e:
        errors.append(Error(str(e), hint="Set VISREC_PRODUCT_MODEL = 'app_label.Model'.", id="visrec.E010"))
        return errors
    try:
        get_adapter.cache_clear()
        get_adapter()
    except ImproperlyConfigured as e:
        errors.append(
            Error(
                str(e),
                hint="Set VISREC_PRODUCT_ADAPTER to a dotted path such as 'shop.visrec.ShopAdapter'.",
                id="visrec.E011",
            )
        )
    return errors


@register()
def check_read_replicas(app_configs=None, **kwargs) -> list[Error]:
    """visrec.E020: every alias in ``VISREC["READ_REPLICAS"]`` is a database, routed by ``ReplicaRouter``."""
    from django.conf import settings

    aliases = list(visrec_settings.READ_REPLICAS or ())
    if not aliases:
        return []
    errors = [
        Error(
            f"VISREC['READ_REPLICAS'] names {alias!r}, which is not in DATABASES",
            hint="Add the replica to DATABASES (e.g. DATABASE_REPLICA_URLS) or remove it from READ_REPLICAS.",
            id="visrec.E020",
        )
        for alias in aliases
        if alias not in settings.DATABASES or alias == "default"
    ]
    routers = [r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__qualname__}" for r in
               getattr(settings, "DATABASE_ROUTERS", [])]  # fmt: skip
    if "recommendations.replicas.ReplicaRouter" not in routers:
        errors.append(
            Error(
                "VISREC['READ_REPLICAS'] is set but recommendations.replicas.ReplicaRouter is not in DATABASE_ROUTERS",
                hint="Add 'recommendations.replicas.ReplicaRouter' to DATABASE_ROUTERS (first).",
                id="visrec.E020",
            )
        )
    return errors
