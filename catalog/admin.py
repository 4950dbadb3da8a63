"""Admin for the catalogue: thumbnails, search, filters and embedding status."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.urls import path
from django.utils.html import format_html

from . import services
from .models import Category, Interaction, Product, ProductImage


def _thumbnail(image: ProductImage | None, size: int = 64) -> str:
    if image is None or not image.file:
        return "—"
    return format_html(
        '<img src="{}" width="{}" height="{}" style="object-fit:cover" alt="">', image.file.url, size, size
    )


def _requeue(model_admin, request, images) -> None:
    """Queue ``images`` for embedding again (pending, error cleared), logged per product."""
    from recommendations.health import requeue_images

    n = requeue_images(request.user, images)
    model_admin.message_user(request, f"Queued {n} image(s) for embedding.", messages.SUCCESS)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "parent", "product_count"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_products=Count("products"))

    @admin.display(description="products", ordering="_products")
    def product_count(self, obj: Category) -> int:
        return obj._products


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 0
    fields = ["preview", "file", "position", "is_primary", "status", "error", "width", "height"]
    readonly_fields = ["preview", "status", "error", "width", "height"]

    @admin.display(description="preview")
    def preview(self, obj: ProductImage) -> str:
        return _thumbnail(obj, 96)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "sku", "title", "category", "price", "stock", "is_active", "embedding_status"]
    list_display_links = ["thumbnail", "sku", "title"]
    list_filter = ["is_active", "category", "images__status"]
    search_fields = ["sku", "title", "description"]
    list_select_related = ["category"]
    inlines = [ProductImageInline]
    actions = ["reembed", "retry_failed"]
    change_form_template = "admin/catalog/product/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("images")

    def get_urls(self):
        from recommendations.admin_merch import judge_view

        judge = path("<path:object_id>/judge/", self.admin_site.admin_view(judge_view), name="catalog_product_judge")
        return [judge, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from recommendations.admin_merch import similar_preview

        product = self.get_object(request, object_id)
        if product is not None:
            extra_context = {**(extra_context or {}), **similar_preview(request, product)}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_reembed_permission(self, request) -> bool:
        return request.user.has_perm("recommendations.add_taskrun")

    @admin.action(description="Re-embed the images of selected products", permissions=["reembed"])
    def reembed(self, request, queryset) -> None:
        _requeue(self, request, ProductImage.objects.filter(product__in=queryset))

    @admin.action(description="Retry failed images of selected products", permissions=["reembed"])
    def retry_failed(self, request, queryset) -> None:
        _requeue(self, request, ProductImage.objects.filter(product__in=queryset, status=ProductImage.Status.FAILED))

    def save_formset(self, request, form, formset, change: bool) -> None:
        if formset.model is ProductImage:
            for image_form in formset.forms:
                if "file" in image_form.changed_data:
                    services.mark_new_file(image_form.instance)
        super().save_formset(request, form, formset, change)

    @admin.display(description="image")
    def thumbnail(self, obj: Product) -> str:
        return _thumbnail(obj.primary_image)

    @admin.display(description="embedding")
    def embedding_status(self, obj: Product) -> str:
        image = obj.primary_image
        if image is None:
            return "no image"
        if image.status == ProductImage.Status.FAILED and image.error:
            return format_html(
                '{} <small title="{}">({})</small>', image.get_status_display(), image.error, image.error[:60]
            )
        return image.get_status_display()


@admin.register(ProductImage)
class ProductImageAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "product", "is_primary", "status", "error", "width", "height", "updated_at"]
    list_filter = ["status", "is_primary"]
    search_fields = ["product__sku", "product__title", "sha256", "error"]
    raw_id_fields = ["product"]
    readonly_fields = ["sha256", "width", "height", "status", "error"]
    actions = ["reembed"]

    @admin.display(description="image")
    def thumbnail(self, obj: ProductImage) -> str:
        return _thumbnail(obj)

    def has_reembed_permission(self, request) -> bool:
        return request.user.has_perm("recommendations.add_taskrun")

    @admin.action(description="Re-embed selected images", permissions=["reembed"])
    def reembed(self, request, queryset) -> None:
        _requeue(self, request, queryset)

    def save_model(self, request, obj: ProductImage, form, change: bool) -> None:
        if "file" in form.changed_data:
            services.mark_new_file(obj)
        super().save_model(request, obj, form, change)


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "product", "user", "session_key", "value", "source"]
    list_filter = ["kind", "source", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["product__sku", "user__username", "session_key"]
    raw_id_fields = ["product", "user"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product", "user")
