"""API serializers."""

from __future__ import annotations

from rest_framework import serializers


class RecommendedProductSerializer(serializers.Serializer):
    """A product in a recommendation list (serialises ``serving.Recommendation``)."""

    id = serializers.IntegerField(source="product.pk")
    sku = serializers.CharField(source="product.sku")
    title = serializers.CharField(source="product.title")
    price = serializers.DecimalField(source="product.price", max_digits=12, decimal_places=2)
    currency = serializers.CharField(source="product.currency")
    url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    score = serializers.FloatField()
    reason = serializers.CharField()

    def _absolute(self, url: str | None) -> str | None:
        request = self.context.get("request")
        return request.build_absolute_uri(url) if url and request else url

    def get_url(self, obj) -> str:
        return self._absolute(obj.product.get_absolute_url())

    def get_image_url(self, obj) -> str | None:
        image = obj.product.primary_image
        return self._absolute(image.file.url) if image and image.file else None


class LimitSerializer(serializers.Serializer):
    """Validates ``?limit=`` between 1 and ``max_limit``."""

    def __init__(self, *args, max_limit: int = 100, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["limit"] = serializers.IntegerField(required=False, min_value=1, max_value=max_limit)
