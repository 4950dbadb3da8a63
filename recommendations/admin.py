"""Admin for embedding-model versions and vectors (read-mostly)."""

from django.contrib import admin

from .models import EmbeddingModel, ImageEmbedding


@admin.register(EmbeddingModel)
class EmbeddingModelAdmin(admin.ModelAdmin):
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


# The cockpit's admin modules register their admins and pages on import.
from . import (  # noqa: E402
    admin_dashboard,  # noqa: F401  (dashboard, model versions, experiments)
    admin_merch,  # noqa: F401  (rules, judgements, catalogue health)
    admin_tasks,  # noqa: F401  (task runs, bulk import)
)
