"""Admin for the catalogue: thumbnails, search, filters and visrec's embedding status of each image."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, Q, QuerySet
from django.urls import path
from django.utils.html import format_html

from recommendations.models import ImageState

from . import services
from .models import Category, Product, ProductImage


def _thumbnail(image: ProductImage | None, size: int = 64) -> str:
    if image is None or not image.file:
        return "—"
    return format_html(
        '<img src="{}" width="{}" height="{}" style="object-fit:cover" alt="">', image.file.url, size, size
    )


def _requeue(model_admin, request, states) -> None:
    """Queue visrec's ``states`` of images for embedding again (pending, error cleared), logged per product."""
    from recommendations.cockpit.health import requeue_images

    n = requeue_images(request.user, states)
    model_admin.message_user(request, f"Queued {n} image(s) for embedding.", messages.SUCCESS)


def _state(image: ProductImage) -> ImageState | None:
    """Visrec's state of ``image`` (the catalogue adapter keys images by pk)."""
    return ImageState.objects.filter(product_id=image.product_id, key=str(image.pk)).first()


def _states_of(images) -> QuerySet:
    rows = images.values_list("product_id", "pk")
    keys = Q(pk__in=[])
    for product_id, pk in rows:
        keys |= Q(product_id=product_id, key=str(pk))
    return ImageState.objects.filter(keys)


def _status_html(state: ImageState | None) -> str:
    if state is None:
        return "—"
    if state.status == ImageState.Status.FAILED and state.error:
        return format_html(
            '{} <small title="{}">({})</small>', state.get_status_display(), state.error, state.error[:60]
        )
    return state.get_status_display()


class ProductImageForm(forms.ModelForm):
    """A product photo; a new upload must be a real raster image (:func:`services.check_image_upload`)."""

    class Meta:
        model = ProductImage
        fields = "__all__"

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if isinstance(upload, UploadedFile):
            try:
                services.check_image_upload(upload)
            except ValueError as e:
                raise forms.ValidationError(f"Not a usable image: {e}.", code="invalid_image") from e
        return upload


class _ImageStatusMixin:
    @admin.display(description="embedding status")
    def status(self, obj: ProductImage) -> str:
        return _status_html(_state(obj)) if obj.pk else "—"

    @admin.display(description="reason")
    def reason(self, obj: ProductImage) -> str:
        state = _state(obj) if obj.pk else None
        return state.error if state else ""


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


class ProductImageInline(_ImageStatusMixin, admin.TabularInline):
    model = ProductImage
    form = ProductImageForm
    extra = 0
    fields = ["preview", "file", "position", "is_primary", "status", "reason", "width", "height"]
    readonly_fields = ["preview", "status", "reason", "width", "height"]

    @admin.display(description="preview")
    def preview(self, obj: ProductImage) -> str:
        return _thumbnail(obj, 96)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "sku", "title", "category", "price", "stock", "is_active", "embedding_status"]
    list_display_links = ["thumbnail", "sku", "title"]
    list_filter = ["is_active", "category", "visrec_images__status"]
    search_fields = ["sku", "title", "description"]
    list_select_related = ["category"]
    inlines = [ProductImageInline]
    actions = ["reembed", "retry_failed"]
    change_form_template = "admin/catalog/product/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("images", "visrec_images")

    def get_urls(self):
        from recommendations.cockpit.merch import judge_view

        from .admin_import import import_view

        wrap = self.admin_site.admin_view
        judge = path("<path:object_id>/judge/", wrap(judge_view), name="catalog_product_judge")
        return [path("import/", wrap(import_view), name="visrec_import"), judge, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from recommendations.cockpit.merch import similar_preview

        product = self.get_object(request, object_id)
        if product is not None:
            extra_context = {**(extra_context or {}), **similar_preview(request, product)}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_reembed_permission(self, request) -> bool:
        return request.user.has_perm("recommendations.add_taskrun")

    @admin.action(description="Re-embed the images of selected products", permissions=["reembed"])
    def reembed(self, request, queryset) -> None:
        _requeue(self, request, ImageState.objects.filter(product__in=queryset))

    @admin.action(description="Retry failed images of selected products", permissions=["reembed"])
    def retry_failed(self, request, queryset) -> None:
        _requeue(self, request, ImageState.objects.filter(product__in=queryset, status=ImageState.Status.FAILED))

    def save_formset(self, request, form, formset, change: bool) -> None:
        if formset.model is ProductImage:
            for image_form in formset.forms:
                if "file" in image_form.changed_data:
                    services.checksum_new_file(image_form.instance)
        super().save_formset(request, form, formset, change)

    @admin.display(description="image")
    def thumbnail(self, obj: Product) -> str:
        return _thumbnail(obj.primary_image)

    @admin.display(description="embedding")
    def embedding_status(self, obj: Product) -> str:
        states = list(obj.visrec_images.all())  # visrec's state of the product's images (prefetched)
        if not states:
            return "no image"
        return _status_html(next((s for s in states if s.is_primary), states[0]))


@admin.register(ProductImage)
class ProductImageAdmin(_ImageStatusMixin, admin.ModelAdmin):
    form = ProductImageForm
    list_display = ["thumbnail", "product", "is_primary", "status", "width", "height", "updated_at"]
    list_filter = ["is_primary"]
    search_fields = ["product__sku", "product__title", "sha256", "import_error"]
    raw_id_fields = ["product"]
    readonly_fields = ["sha256", "width", "height", "status", "reason", "import_error"]
    actions = ["reembed"]

    @admin.display(description="image")
    def thumbnail(self, obj: ProductImage) -> str:
        return _thumbnail(obj)

    def has_reembed_permission(self, request) -> bool:
        return request.user.has_perm("recommendations.add_taskrun")

    @admin.action(description="Re-embed selected images", permissions=["reembed"])
    def reembed(self, request, queryset) -> None:
        _requeue(self, request, _states_of(queryset))

    def save_model(self, request, obj: ProductImage, form, change: bool) -> None:
        if "file" in form.changed_data:
            services.checksum_new_file(obj)
        super().save_model(request, obj, form, change)
