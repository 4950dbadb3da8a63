"""API views: thin adapters over ``recommendations.serving``."""

from __future__ import annotations

from django.db import DatabaseError
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import serving
from ..conf import get_product_model, visrec_settings
from .errors import InvalidParameter, ProductNotFound, RecommendationsUnavailable
from .serializers import LimitSerializer, RecommendedProductSerializer


def _limit(request) -> int:
    params = LimitSerializer(data=request.query_params, max_limit=int(visrec_settings.MAX_LIMIT))
    if not params.is_valid():
        raise InvalidParameter(f"limit: {params.errors['limit'][0]}")
    return params.validated_data.get("limit", int(visrec_settings.SIMILAR_DEFAULT_LIMIT))


class SimilarProductsView(APIView):
    """``GET /api/v1/products/{id}/similar/?limit=8``: visually similar products."""

    def get(self, request, pk: int):
        limit = _limit(request)
        product = get_product_model().objects.filter(pk=pk).first()
        if product is None:
            raise ProductNotFound(f"Product {pk} does not exist.")
        try:
            items = serving.similar_items_or_fallback(product, limit)
        except DatabaseError as e:
            raise RecommendationsUnavailable() from e
        data = RecommendedProductSerializer(items, many=True, context={"request": request}).data
        return Response({"product": product.pk, "count": len(data), "results": data})


class PopularProductsView(APIView):
    """``GET /api/v1/products/popular/?limit=8``: best sellers."""

    def get(self, request):
        items = serving.popular(_limit(request))
        data = RecommendedProductSerializer(items, many=True, context={"request": request}).data
        return Response({"count": len(data), "results": data})
