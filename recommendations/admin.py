"""Admin for embedding-model versions, vectors (read-mostly) and shopper events."""

from django.contrib import admin, messages

from .cockpit.dashboard import KeepActiveAdminMixin
from .models import EmbeddingModel, ImageEmbedding, ImageState, Interaction, ProductSnapshot


@admin.register(EmbeddingModel)
class EmbeddingModelAdmin(KeepActiveAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "backbone", "dimensions", "is_active", "vector_count", "created_at"]
    readonly_fields = ["key", "backbone", "weights_sha256", "preprocessing", "dimensions", "created_at"]

    @admin.display(description="vectors")
    def vector_count(self, obj: EmbeddingModel) -> int:
        return obj.embeddings.count()


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["image", "model", "created_at"]
    list_filter = ["model"]
    raw_id_fields = ["image"]
    exclude = ["vector"]
    readonly_fields = ["image", "model", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ImageState)
class ImageStateAdmin(admin.ModelAdmin):
    """visrec's state of every shop image: embedding status, failures and their reasons."""

    list_display = ["__str__", "product", "is_primary", "status", "error", "width", "height", "updated_at"]
    list_filter = ["status", "is_primary"]
    search_fields = ["sha256", "error", "key"]
    raw_id_fields = ["product"]
    readonly_fields = ["product", "key", "version", "url", "sha256", "width", "height", "status", "error"]
    actions = ["reembed"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_reembed_permission(self, request) -> bool:
        return request.user.has_perm("recommendations.add_taskrun")

    @admin.action(description="Re-embed selected images", permissions=["reembed"])
    def reembed(self, request, queryset) -> None:
        from .cockpit.health import requeue_images

        n = requeue_images(request.user, queryset)
        self.message_user(request, f"Queued {n} image(s) for embedding.", messages.SUCCESS)


@admin.register(ProductSnapshot)
class ProductSnapshotAdmin(admin.ModelAdmin):
    """What the adapter last said about each product (read-only; ``visrec_sync`` refreshes it)."""

    list_display = ["product_id", "title", "category_name", "active", "in_stock", "recommendable", "updated_at"]
    list_filter = ["active", "in_stock", "recommendable"]
    search_fields = ["title", "sku"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "product", "user", "session_key", "value", "source"]
    list_filter = ["kind", "source", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["user__username", "session_key"]
    raw_id_fields = ["product", "user"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product", "user")


# The cockpit's admin modules register their admins and pages on import.
from .cockpit import (  # noqa: E402
    dashboard,  # noqa: F401  (dashboard, model versions, experiments)
    merch,  # noqa: F401  (rules, judgements, catalogue health)
    runs,  # noqa: F401  (task runs)
)
