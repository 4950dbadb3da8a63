"""Models of the recommendation engine: embedding-model versions and image vectors."""

from __future__ import annotations

from django.conf import settings
from django.db import connection, models
from pgvector.django import HalfVectorField


class EmbeddingModelQuerySet(models.QuerySet):
    def active(self) -> EmbeddingModel | None:
        return self.filter(is_active=True).first()


class EmbeddingModel(models.Model):
    """One embedding-model version: backbone, weights checksum and preprocessing.

    Vectors of different versions never mix; each version has its own partial HNSW
    index on ``vector::halfvec(dimensions)`` so versions of any width share one table.
    """

    key = models.CharField(max_length=64, unique=True, help_text="Hash of backbone, weights and preprocessing.")
    backbone = models.CharField(max_length=100)
    weights_sha256 = models.CharField(max_length=64)
    preprocessing = models.JSONField(default=dict)
    dimensions = models.PositiveIntegerField()
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EmbeddingModelQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_embedding_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.backbone} v{self.pk} ({self.dimensions}-d{', active' if self.is_active else ''})"

    @property
    def index_name(self) -> str:
        return f"visrec_embedding_hnsw_{self.pk}"

    def ensure_index(self) -> None:
        """Create this version's HNSW cosine index (idempotent).

        Outside a transaction it is built ``CONCURRENTLY`` so a large catalogue keeps
        taking writes meanwhile.
        """
        table = ImageEmbedding._meta.db_table
        in_transaction = connection.in_atomic_block
        with connection.cursor() as cursor:
            if in_transaction:  # rows written earlier in this transaction must be checked first
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                f"CREATE INDEX {'' if in_transaction else 'CONCURRENTLY '}IF NOT EXISTS {self.index_name} ON {table} "
                f"USING hnsw ((vector::halfvec({int(self.dimensions)})) halfvec_cosine_ops) "
                f"WHERE model_id = {int(self.pk)}"
            )


class ImageEmbedding(models.Model):
    """The L2-normalised vector of one image under one embedding-model version."""

    image = models.ForeignKey(settings.VISREC_IMAGE_MODEL, on_delete=models.CASCADE, related_name="embeddings")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="embeddings")
    vector = HalfVectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model"], name="one_embedding_per_image_and_model")]

    def __str__(self) -> str:
        return f"embedding of image {self.image_id} ({self.model_id})"


class ModelVersionQuerySet(models.QuerySet):
    def active(self) -> ModelVersion | None:
        return self.filter(is_active=True).first()


class ModelVersion(models.Model):
    """One trained recommender: artifact, parameters, offline metrics, training facts.

    Exactly one version is active at a time; serving reads it. Older versions stay
    and can be re-activated.
    """

    kind = models.CharField(max_length=64, help_text="Recommender name in recommendations.ml.base.REGISTRY.")
    params = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, help_text="Offline metrics on the temporal hold-out.")
    artifact = models.CharField(max_length=500, help_text="Path of the .npz artifact, relative to VISREC CACHE_DIR.")
    data_size = models.JSONField(default=dict, help_text="Users, items and interactions in the snapshot.")
    training_seconds = models.FloatField(default=0.0)
    embedding_model = models.ForeignKey(EmbeddingModel, null=True, blank=True, on_delete=models.SET_NULL)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.pk}{' (active)' if self.is_active else ''}"


class Impression(models.Model):
    """One rendered recommendation list: which products were shown where, by which model.

    Written asynchronously by :mod:`recommendations.tracking`; shopper and model are
    plain ids (no foreign-key constraints) so a late write never fails on a row that
    was deleted meanwhile, and history survives model clean-ups.
    """

    id = models.UUIDField(primary_key=True, editable=False)
    widget = models.CharField(max_length=64)
    source = models.CharField(max_length=32, blank=True, default="")
    model_version_id = models.BigIntegerField(null=True, blank=True)
    embedding_version = models.CharField(max_length=64, blank=True, default="")
    arm = models.CharField("experiment arm", max_length=64, blank=True, default="")
    items = models.JSONField(default=list, help_text='[{"product": id, "position": n, "reason": ...}] in list order.')
    user_id = models.BigIntegerField(null=True, blank=True)
    session_key = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["widget", "model_version_id", "created_at"], name="impression_widget_model")]

    def __str__(self) -> str:
        return f"{self.widget} impression {self.id}"


class Click(models.Model):
    """A click on one item of an impression (from a signed click token).

    Widget and model version are copied from the token so CTR per widget and model
    version is known even before the impression row is written.
    """

    impression_id = models.UUIDField()
    widget = models.CharField(max_length=64)
    model_version_id = models.BigIntegerField(null=True, blank=True)
    product_id = models.BigIntegerField()
    position = models.PositiveIntegerField()
    user_id = models.BigIntegerField(null=True, blank=True)
    session_key = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["widget", "model_version_id", "created_at"], name="click_widget_model")]
        constraints = [
            models.UniqueConstraint(fields=["impression_id", "position"], name="one_click_per_impression_position")
        ]

    def __str__(self) -> str:
        return f"click on {self.product_id} ({self.widget})"
