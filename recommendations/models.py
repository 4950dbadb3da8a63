"""Models of the recommendation engine: image vectors, model versions, shopper events, the cockpit's state.

Foreign keys to the shop's products go to ``VISREC_PRODUCT_MODEL``; no model here
adds a column to, or migrates, a table of the shop.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import connection, models
from django.utils import timezone
from pgvector.django import HalfVectorField

from .conf import product_model_label

#: The shop's product model label (``settings.VISREC_PRODUCT_MODEL``), read once as Django reads AUTH_USER_MODEL.
VISREC_PRODUCT_MODEL = product_model_label()


def refuse_deleting_active(objs, what: str) -> None:
    """Raise ``ProtectedError`` when ``objs`` holds the active ``what`` (serving reads it)."""
    active = [obj for obj in objs if obj.is_active]
    if active:
        raise models.ProtectedError(
            f"{active[0]} is the active {what} and cannot be deleted; activate another one first.", set(active)
        )


class _KeepsActiveQuerySet(models.QuerySet):
    """A queryset whose ``delete()`` refuses to delete the active row."""

    def delete(self):
        refuse_deleting_active(self.filter(is_active=True)[:1], self.model._meta.verbose_name)
        return super().delete()


class _KeepsActive:
    """``delete()`` of the active row raises ``ProtectedError`` (the admin says so before)."""

    def delete(self, *args, **kwargs):
        refuse_deleting_active(type(self).objects.filter(pk=self.pk, is_active=True), self._meta.verbose_name)
        return super().delete(*args, **kwargs)


class EmbeddingModelQuerySet(_KeepsActiveQuerySet):
    def active(self) -> EmbeddingModel | None:
        return self.filter(is_active=True).first()


class EmbeddingModel(_KeepsActive, models.Model):
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

    def index_exists(self) -> bool:
        """Whether this version's HNSW index is there (it is dropped when another version takes over)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [self.index_name])
            return bool(cursor.fetchone()[0])

    def ensure_index(self) -> None:
        """Create this version's HNSW cosine index (idempotent), built with ``HNSW_M`` / ``HNSW_EF_CONSTRUCTION``.

        Outside a transaction it is built ``CONCURRENTLY`` so a large catalogue keeps
        taking writes meanwhile.
        """
        from .conf import visrec_settings

        table = ImageEmbedding._meta.db_table
        build = (
            f"WITH (m = {int(visrec_settings.HNSW_M)}, ef_construction = {int(visrec_settings.HNSW_EF_CONSTRUCTION)}) "
        )
        in_transaction = connection.in_atomic_block
        with connection.cursor() as cursor:
            if in_transaction:  # rows written earlier in this transaction must be checked first
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                f"CREATE INDEX {'' if in_transaction else 'CONCURRENTLY '}IF NOT EXISTS {self.index_name} ON {table} "
                f"USING hnsw ((vector::halfvec({int(self.dimensions)})) halfvec_cosine_ops) "
                f"{build}WHERE model_id = {int(self.pk)}"
            )


class ImageEmbedding(models.Model):
    """The L2-normalised vector of one image under one embedding-model version."""

    image = models.ForeignKey("ImageState", on_delete=models.CASCADE, related_name="embeddings")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="embeddings")
    vector = HalfVectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model"], name="one_embedding_per_image_and_model")]

    def __str__(self) -> str:
        return f"embedding of image {self.image_id} ({self.model_id})"


class EmbeddingHeadQuerySet(models.QuerySet):
    def current(self, base_key: str) -> EmbeddingHead | None:
        """The newest head fitted on the CNN vectors of the head-less version ``base_key`` (weights deferred)."""
        return self.filter(base_key=base_key).defer("data").order_by("-fitted_at", "-pk").first()


class EmbeddingHead(models.Model):
    """A similarity head (``recommendations.ml.head``) fitted on the shop's categories, stored by checksum.

    An embedding version that joins it names it in ``preprocessing["head"]["sha256"]``;
    every process loads it from here, so all of them embed that version alike.
    """

    sha256 = models.CharField(max_length=64, unique=True)
    base_key = models.CharField(
        max_length=64, db_index=True, help_text="Key of the head-less embedding version whose CNN vectors it reads."
    )
    data = models.BinaryField(help_text="SimilarityHead.to_bytes(): the weights as .npz.")
    spec = models.JSONField(default=dict, help_text="Hyper-parameters (HeadSpec).")
    categories = models.PositiveIntegerField(help_text="Categories it learned to tell apart.")
    products = models.PositiveIntegerField(help_text="Categorised products it was fitted on.")
    category_counts = models.JSONField(
        default=dict, help_text="{category id: products with a vector} when fitted; a large change refits."
    )
    fitted_at = models.DateTimeField(default=timezone.now)

    objects = EmbeddingHeadQuerySet.as_manager()

    def __str__(self) -> str:
        return f"similarity head {self.sha256[:12]} ({self.categories} categories, {self.products} products)"


class ModelVersionQuerySet(_KeepsActiveQuerySet):
    def active(self) -> ModelVersion | None:
        return self.filter(is_active=True).first()


class ModelVersion(_KeepsActive, models.Model):
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
    context = models.JSONField(
        default=dict,
        blank=True,
        help_text='What the list was asked for, so it can be replayed: {"product": anchor id, "category": id, '
        '"limit": n, "exclude": [ids]}.',
    )
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["widget", "model_version_id", "created_at"], name="impression_widget_model")]

    def __str__(self) -> str:
        return f"{self.widget} impression {self.id}"


class Click(models.Model):
    """The click on an impression (from a signed click token): at most one per impression.

    An impression is one shopper's list, and only that shopper's token counts, so CTR is
    the share of lists clicked. Widget and model version are copied from the token so CTR
    per widget and model version is known even before the impression row is written.
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
        constraints = [models.UniqueConstraint(fields=["impression_id"], name="one_click_per_impression")]

    def __str__(self) -> str:
        return f"click on {self.product_id} ({self.widget})"


# --- The shop's products as visrec keeps them (copied through the adapter) --------------


class ImageStateQuerySet(models.QuerySet):
    def pending(self) -> ImageStateQuerySet:
        """Images still waiting for an embedding."""
        return self.filter(status=ImageState.Status.PENDING)


class ImageState(models.Model):
    """visrec's state of one shop image: the adapter's identity and version, checksum, embedding status.

    One row per image the adapter reports (``ImageRecord``); ``recommendations.sync``
    creates, updates and deletes them. A new ``version`` makes the image pending again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    product = models.ForeignKey(VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="visrec_images")
    key = models.CharField(max_length=200, help_text="The adapter's identity of the image within its product.")
    version = models.CharField(max_length=500, blank=True, default="", help_text="Changes when the file changes.")
    url = models.CharField(max_length=1000, blank=True, default="")
    is_primary = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="", db_index=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ImageStateQuerySet.as_manager()

    class Meta:
        ordering = ["product", "position", "pk"]
        constraints = [models.UniqueConstraint(fields=["product", "key"], name="visrec_one_state_per_image")]

    def __str__(self) -> str:
        return f"image {self.key} of {self.product_id} ({self.status})"


class ProductSnapshot(models.Model):
    """What the adapter last said about one product, kept so serving joins only visrec's tables.

    Kept in step by ``recommendations.sync`` (signals of the adapter's watched models,
    after commit, and the ``visrec_sync`` command); deleted with the product.
    """

    product = models.OneToOneField(
        VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="visrec_snapshot"
    )
    recommendable = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    in_stock = models.BooleanField(default=True)
    title = models.CharField(max_length=500, blank=True, default="")
    sku = models.CharField(max_length=200, blank=True, default="")
    url = models.CharField(max_length=1000, blank=True, default="")
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    category_id = models.BigIntegerField(null=True, blank=True)
    category_name = models.CharField(max_length=300, blank=True, default="")
    category_path = ArrayField(models.BigIntegerField(), default=list, blank=True)
    image_url = models.CharField(max_length=1000, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["category_id"], name="snapshot_category"),
            GinIndex(fields=["category_path"], name="snapshot_category_path"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.product_id})"

    def get_absolute_url(self) -> str:
        """The product page in the shop (the adapter's URL)."""
        return self.url

    @property
    def primary_image_url(self) -> str | None:
        """URL of the image lists show, or None."""
        return self.image_url or None


# --- Shopper events ----------------------------------------------------------------------


class InteractionQuerySet(models.QuerySet):
    """Queries over shopper interactions."""

    def for_shopper(self, user=None, session_key: str | None = None) -> InteractionQuerySet:
        """A signed-in user's or an anonymous session's history, newest first."""
        if user is not None and user.is_authenticated:
            return self.filter(user=user).order_by("-created_at")
        if session_key:
            return self.filter(session_key=session_key).order_by("-created_at")
        return self.none()


class Interaction(models.Model):
    """One shopper action on a product, by a user or an anonymous session.

    Recorded through :mod:`recommendations.events` (the shop's code, oscar's signals or
    the events API). The table was ``catalog_interaction`` before the plugin owned it.
    """

    class Kind(models.TextChoices):
        VIEW = "view", "View"
        CLICK = "click", "Click"
        ADD_TO_CART = "add_to_cart", "Add to cart"
        PURCHASE = "purchase", "Purchase"
        RATING = "rating", "Rating"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="visrec_interactions"
    )
    session_key = models.CharField(max_length=64, blank=True, default="")
    product = models.ForeignKey(VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="visrec_interactions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.FloatField(default=1.0)
    source = models.CharField("source widget", max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # "<poster>:<client event id>" for events posted with an id: a retried event is stored once.
    event_key = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)

    objects = InteractionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="interaction_user_hist"),
            models.Index(fields=["session_key", "-created_at"], name="interaction_session_hist"),
            models.Index(fields=["product", "kind"], name="interaction_product_kind"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) | ~models.Q(session_key=""), name="interaction_has_shopper"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.product_id}"


class EventBatch(models.Model):
    """A batch of events accepted under an ``Idempotency-Key``; a retry gets ``response`` again."""

    scope = models.CharField(max_length=100, help_text="who posted it: token:<id>, user:<id> or session:<key>")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body")
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="event_batch_unique_key")]

    def __str__(self) -> str:
        return f"event batch {self.key} of {self.scope}"


# --- The shop owner's cockpit (admin): merchandising, judgements, experiments, task runs ---


class RuleQuerySet(models.QuerySet):
    def in_force(self, at=None):
        """Rules switched on whose optional start/end window contains ``at`` (default now)."""
        from django.utils import timezone

        at = at or timezone.now()
        return self.filter(is_active=True).filter(
            models.Q(starts_at__isnull=True) | models.Q(starts_at__lte=at),
            models.Q(ends_at__isnull=True) | models.Q(ends_at__gt=at),
        )


class Rule(models.Model):
    """A merchandising rule set by the shop owner in the admin and applied by serving.

    ``kind`` says what happens to the *target* (a product, or a category for boosts and
    exclusions); the *scope* says where: a widget (blank = every widget), the lists of one
    anchor product (e.g. its similar items), or the lists shown in one category.
    """

    PIN, BLOCK, BOOST, EXCLUDE_CATEGORY = "pin", "block", "boost", "exclude_category"
    KINDS = [
        (PIN, "Pin product (shown first)"),
        (BLOCK, "Block product (never shown)"),
        (BOOST, "Boost product or category (score × multiplier)"),
        (EXCLUDE_CATEGORY, "Exclude category"),
    ]

    kind = models.CharField(max_length=32, choices=KINDS)
    product = models.ForeignKey(
        VISREC_PRODUCT_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Target product (pin, block, boost).",
    )
    category_id = models.BigIntegerField(
        "category", null=True, blank=True, help_text="Target category (boost, exclude category): the adapter's id."
    )
    widget = models.CharField(max_length=64, blank=True, default="", help_text="Blank: every widget.")
    scope_product = models.ForeignKey(
        VISREC_PRODUCT_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only in the lists of this product's page (e.g. its similar items).",
    )
    scope_category_id = models.BigIntegerField(
        "scope category", null=True, blank=True, help_text="Only in lists shown for this category (the adapter's id)."
    )
    multiplier = models.FloatField(default=1.0, help_text="Boost: score multiplier (> 1 lifts, < 1 sinks).")
    position = models.PositiveSmallIntegerField(default=0, help_text="Pin: order among pins (0 first).")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RuleQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "position", "-created_at"]
        indexes = [models.Index(fields=["is_active", "kind"], name="rule_active_kind")]

    def __str__(self) -> str:
        target = self.product_id and f"product {self.product_id}" or self.category_id and f"category {self.category_id}"
        return f"{self.get_kind_display()}: {target or '?'}"


class SimilarityJudgement(models.Model):
    """The shop owner's verdict on one similar-items neighbour of a product.

    "not similar" removes the neighbour from the product's list at once, "good match"
    lifts it; both become negative/positive pairs for retraining and evaluation.
    """

    GOOD, NOT_SIMILAR = "good", "not_similar"
    VERDICTS = [(GOOD, "Good match"), (NOT_SIMILAR, "Not similar")]

    product = models.ForeignKey(VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+")
    neighbour = models.ForeignKey(VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=16, choices=VERDICTS)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["product", "neighbour"], name="one_judgement_per_pair")]

    def __str__(self) -> str:
        return f"{self.product_id} ~ {self.neighbour_id}: {self.get_verdict_display()}"


class Stamp(models.Model):
    """A change stamp shared by every process through the database (``recommendations.stamps``).

    Serving keeps the admin's rules and the running experiments in each process and reloads
    them when their stamp changes; a new ``value`` is written by the change itself.
    """

    name = models.CharField(max_length=32, primary_key=True)
    value = models.CharField(max_length=32)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.value}"


class Experiment(models.Model):
    """An A/B test: traffic split by a stable hash of user or session between two arms.

    Each arm is a model version (``*_version``) or blend settings (``*_settings``, e.g.
    ``{"SIMILAR_BLEND": 0.3}``); ``treatment_percent`` of shoppers get the treatment.
    """

    DRAFT, RUNNING, ENDED = "draft", "running", "ended"
    STATUSES = [(DRAFT, "Draft"), (RUNNING, "Running"), (ENDED, "Ended")]

    name = models.CharField(max_length=100, unique=True)
    widget = models.CharField(max_length=64, blank=True, default="", help_text="Blank: every widget.")
    control_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    treatment_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    control_settings = models.JSONField(default=dict, blank=True)
    treatment_settings = models.JSONField(default=dict, blank=True)
    treatment_percent = models.PositiveSmallIntegerField(default=50)
    salt = models.CharField(max_length=32, blank=True, default="", help_text="Hash salt (defaults to the name).")
    status = models.CharField(max_length=16, choices=STATUSES, default=DRAFT)
    winner = models.CharField(max_length=16, blank=True, default="", help_text="control or treatment, once ended.")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(treatment_percent__lte=100), name="experiment_percent_at_most_100"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"


class TaskRun(models.Model):
    """A background job the admin started or watches: embedding, training, bulk import."""

    EMBED, TRAIN, IMPORT, REPLAY = "embed", "train", "import", "replay"
    KINDS = [(EMBED, "Embed images"), (TRAIN, "Train models"), (IMPORT, "Bulk import"), (REPLAY, "What-if replay")]
    QUEUED, RUNNING, DONE, FAILED, SKIPPED = "queued", "running", "done", "failed", "skipped"
    STATUSES = [(QUEUED, "Queued"), (RUNNING, "Running"), (DONE, "Done"), (FAILED, "Failed"), (SKIPPED, "Skipped")]

    kind = models.CharField(max_length=16, choices=KINDS)
    status = models.CharField(max_length=16, choices=STATUSES, default=QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    report = models.FileField(upload_to="visrec/reports/", blank=True, default="")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker running it (touched while it runs)."
    )
    worker = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid:start time:pid namespace of the process running it."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "status"], name="taskrun_kind_status")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.total) if self.total else (1.0 if self.status == self.DONE else 0.0)


class TaskDelivery(models.Model):
    """How often the broker has handed one Celery task (by task id) to a worker.

    Counted at the start of each delivery in its own committed statement, so a task
    that kills its worker (out of memory) is still counted; past
    ``VISREC["TASK_MAX_DELIVERIES"]`` it is given up. Deleted when the task ends.
    """

    task_id = models.CharField(max_length=255, primary_key=True)
    name = models.CharField(max_length=200)
    count = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField(default=timezone.now)
    last_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.name} {self.task_id} delivered {self.count}x"
