"""API views: thin adapters over ``recommendations.serving`` and ``recommendations.tracking``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError
from django.urls import Resolver404, resolve
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from .. import serving, tracking
from ..conf import get_product_model, visrec_settings
from ..events import IdempotencyKeyReused as KeyReused
from ..events import fingerprint, run_once
from . import events
from .errors import (
    IdempotencyKeyReused,
    InvalidImage,
    InvalidParameter,
    PayloadTooLarge,
    ProductNotFound,
    RecommendationsUnavailable,
    SearchBusy,
)
from .parsers import ImageUploadParser, LimitedJSONParser
from .serializers import (
    ComplementListSerializer,
    ErrorSerializer,
    EventBatchResultSerializer,
    EventBatchSerializer,
    ForYouParamsSerializer,
    ListedItem,
    ListParamsSerializer,
    PopularPageSerializer,
    PopularParamsSerializer,
    RecommendationListSerializer,
    SearchByImageSerializer,
    SimilarListSerializer,
    listed_items_data,
)
from .shoppers import is_server_client, poster_scope, subject

logger = logging.getLogger(__name__)

ERROR_DESCRIPTIONS = {
    400: "Invalid parameters or body (`invalid_parameter`, `validation_error`, `malformed_request`, ...)",
    401: "Bad or inactive token (`authentication_failed`)",
    403: "Not allowed (`permission_denied`), a purchase or rating from a shopper's client (`server_only_events`), "
    "or CSRF failure on a session-authenticated POST",
    404: "Not found (`not_found`, `product_not_found`, `user_not_found`)",
    413: "Body too large (`payload_too_large`)",
    415: "Wrong content type (`unsupported_media_type`)",
    422: "Idempotency-Key reused with another body (`idempotency_key_reused`)",
    429: "Throttled (`throttled`), or too many photos searched at once (`search_busy`); see `Retry-After`",
    503: "Database or recommendation backend unavailable (`service_unavailable`, `recommendations_unavailable`)",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses, all in the ``{"error": {...}}`` shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}


def _params(request, serializer_class=ListParamsSerializer) -> dict:
    if not request.query_params:  # the usual call: no parameters, only the defaults
        return {**_defaults(serializer_class), "category": None}
    params = serializer_class(data=request.query_params, max_limit=int(visrec_settings.MAX_LIMIT))
    if not params.is_valid():
        field, messages = next(iter(params.errors.items()))
        raise InvalidParameter(f"{field}: {messages[0]}")
    data = dict(params.validated_data)
    data["category"] = _category(data.get("category"))
    return data


@functools.lru_cache(maxsize=16)
def _defaults(serializer_class) -> dict:
    """What ``serializer_class`` validates an empty query to (its fields' defaults)."""
    params = serializer_class(data={}, max_limit=1)
    params.is_valid(raise_exception=True)
    return dict(params.validated_data)


def _category(value: str | None):
    if value is None:
        return None
    try:
        Category = get_product_model()._meta.get_field("category").related_model
    except FieldDoesNotExist:
        raise InvalidParameter("category: the products have no category.") from None
    lookup = {"pk": int(value)} if value.isascii() and value.isdigit() and len(value) < 19 else {"slug": value}
    category = Category.objects.filter(**lookup).first()
    if category is None:
        raise InvalidParameter(f"category: no category {value!r}.")
    return category


def _or_cached(widget: str, limit: int, serve: Callable[[], object], exclude=()):
    """``serve()``, or the last good popular list from the cache when the database fails (else 503)."""
    try:
        served = serve()
    except DatabaseError as e:
        logger.warning("%s failed in the API (%s); answering the cached fallback", widget, e)
        fallback = serving.fallback_list(widget, limit, exclude)
        if not fallback.items:
            raise RecommendationsUnavailable() from e
        return fallback
    try:
        serving.remember_popular_if_stale()  # so that a later outage has a list to answer
    except DatabaseError:
        logger.warning("could not refresh the cached fallback list", exc_info=True)
    return served


def _limit(params: dict, default: str = "SIMILAR_DEFAULT_LIMIT") -> int:
    return params.get("limit") or int(getattr(visrec_settings, default))


def listing(request, rec_list, *, user=None, session: str | None = None, **extra) -> dict:
    """The response body of a served list; records its impression and signs a click token per item."""
    impression = tracking.record_impression(rec_list, user=user, session_key=session) if rec_list.items else None
    shown_to = {"user": user, "session_key": session or ""}  # only this shopper's clicks count
    items = [
        ListedItem(
            r.product,
            r.score,
            r.reason,
            n,
            tracking.click_token(impression, r.product.pk, n, **shown_to),
            r.because,
            serving.why(rec_list.widget, r),
            r.shares,
        )
        for n, r in enumerate(rec_list.items)
    ]
    return {
        "widget": rec_list.widget,
        "impression": impression,
        "source": rec_list.source,
        "model_version": rec_list.model_version_id,
        "embedding_version": rec_list.embedding_version,
        **extra,
        "count": len(items),
        "results": listed_items_data(items, request),
    }


class _ProductListView(APIView):
    """A list chosen for one product (``serve(product, limit, user=..., session_key=...)``)."""

    throttle_scope = "recommendations"
    widget = ""
    default_limit = "SIMILAR_DEFAULT_LIMIT"

    def serve(self, product, limit: int, user, session):
        raise NotImplementedError

    def get(self, request, pk: int):
        params = _params(request)
        product = serving.anchor_product(pk) if pk < 2**63 else None
        if product is None:
            raise ProductNotFound(f"Product {pk} does not exist.")
        user, session, limit = *subject(request), _limit(params, self.default_limit)
        rec_list = _or_cached(
            self.widget, limit, lambda: self.serve(product, limit, user, session), exclude=[product.pk]
        )
        return Response(listing(request, rec_list, user=user, session=session, product=product.pk))


class SimilarProductsView(_ProductListView):
    """Visually similar products, blended with the active model's item neighbours."""

    widget = "similar-items"

    def serve(self, product, limit: int, user, session):
        return serving.similar_items(product, limit, user=user, session_key=session)

    @extend_schema(
        operation_id="products_similar",
        parameters=[ListParamsSerializer],
        responses={200: SimilarListSerializer, **errors(400, 401, 404, 429, 503)},
    )
    def get(self, request, pk: int):
        return super().get(request, pk)


class ComplementsView(_ProductListView):
    """Complete the look: products of other categories that go with this one.

    Those shoppers bought with it (same basket, or the same shopper within a day) first;
    for a product with no such history, those whose pictures past buyers paired with
    pictures like its own (the compatibility model). ``reason`` of each item:
    ``co-purchase``, ``compatibility`` or ``popular``.
    """

    widget = "complete-the-look"
    default_limit = "COMPLEMENT_DEFAULT_LIMIT"

    def serve(self, product, limit: int, user, session):
        return serving.complete_the_look(product, limit, user=user, session_key=session)

    @extend_schema(
        operation_id="products_complements",
        parameters=[ListParamsSerializer],
        responses={200: ComplementListSerializer, **errors(400, 401, 404, 429, 503)},
    )
    def get(self, request, pk: int):
        return super().get(request, pk)


class ForYouView(APIView):
    """Recommendations for the signed-in shopper or the anonymous session.

    Staff and server clients (token) may ask for any shopper with ``?user=`` or
    ``?session=``; a shopper asking for someone else gets 403.
    """

    throttle_scope = "recommendations"

    @extend_schema(
        operation_id="recommendations_for_you",
        parameters=[ForYouParamsSerializer],
        responses={200: RecommendationListSerializer, **errors(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request):
        params = _params(request, ForYouParamsSerializer)
        user, session = subject(request, params.get("user"), params.get("session"))
        if user is None and session is None and is_server_client(request):
            raise InvalidParameter("user: a server client names the shopper with ?user= or ?session=.")
        limit = _limit(params, "FOR_YOU_DEFAULT_LIMIT")
        rec_list = _or_cached(
            "for-you",
            limit,
            lambda: serving.for_you(user=user, session_key=session, limit=limit, category=params["category"]),
        )
        return Response(listing(request, rec_list, user=user, session=session))


class PopularProductsView(APIView):
    """Best sellers, optionally in one category, page by page (``limit`` and ``offset``)."""

    throttle_scope = "recommendations"

    @extend_schema(
        operation_id="products_popular",
        parameters=[PopularParamsSerializer],
        responses={200: PopularPageSerializer, **errors(400, 401, 429, 503)},
    )
    def get(self, request):
        params = _params(request, PopularParamsSerializer)
        limit, offset, category = _limit(params), params["offset"], params["category"]

        def serve() -> serving.RecommendationList:  # one item more than a page tells if there is a next one
            items = serving.popular(offset + limit + 1, category=category)[offset:]
            return serving.RecommendationList("popular", items, None, None, "popular" if items else "empty")

        page = _or_cached("popular", limit, serve) if offset == 0 and category is None else serve()
        more, page.items = len(page.items) > limit, page.items[:limit]
        url = request.build_absolute_uri()
        user, session = subject(request)
        return Response(
            listing(
                request,
                page,
                user=user,
                session=session,
                next=replace_query_param(url, "offset", offset + limit) if more else None,
                previous=replace_query_param(url, "offset", max(offset - limit, 0)) if offset else None,
            )
        )


class SearchByImageView(APIView):
    """The products that look most like an uploaded photo."""

    throttle_scope = "search"
    parser_classes = [ImageUploadParser]

    @extend_schema(
        operation_id="search_by_image",
        request={"multipart/form-data": SearchByImageSerializer},
        responses={200: RecommendationListSerializer, **errors(400, 401, 413, 415, 429, 503)},
    )
    def post(self, request):
        form = SearchByImageSerializer(data=request.data, max_limit=int(visrec_settings.MAX_LIMIT))
        form.is_valid(raise_exception=True)
        image = form.validated_data["image"]
        if image.size > int(visrec_settings.MAX_IMAGE_BYTES):
            raise PayloadTooLarge(f"The image is {image.size} bytes; at most {visrec_settings.MAX_IMAGE_BYTES}.")
        category = _category(form.validated_data.get("category"))
        try:
            rec_list = serving.search_by_image(
                image, limit=_limit(form.validated_data, "FOR_YOU_DEFAULT_LIMIT"), category=category
            )
        except serving.InvalidImage as e:
            raise InvalidImage(str(e)) from e
        except serving.SearchBusy as e:
            raise SearchBusy(wait=1, detail=str(e)) from e
        user, session = subject(request)
        return Response(listing(request, rec_list, user=user, session=session))


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Any unique string (up to 255 printable ASCII characters): a retried batch with the same key "
    "records nothing again and gets the first response back, with `Idempotent-Replayed: true` (for 24 hours).",
)


class EventsView(APIView):
    """Record shopper events (view, click, add_to_cart, purchase, rating) in batches of 1 to 100.

    A batch is recorded whole or not at all: one invalid event gives 400 listing every
    invalid index, and nothing is stored. Shoppers post for themselves (session cookie,
    CSRF token when signed in); server clients (token) name ``user`` or ``session``
    per event. Purchases and ratings come only from server clients: from anyone else the
    batch is 403 ``server_only_events`` listing them, and nothing is stored. A click counts
    once per impression, from the shopper it was shown to (another shopper's token is invalid).
    """

    throttle_scope = "events"
    parser_classes = [LimitedJSONParser]

    @extend_schema(
        operation_id="events_create",
        request=EventBatchSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: EventBatchResultSerializer, **errors(400, 401, 403, 413, 415, 422, 429, 503)},
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return Response(events.record(request), status=status.HTTP_201_CREATED)
        if not 0 < len(key) <= 255 or not key.isascii() or not key.isprintable():
            raise InvalidParameter("Idempotency-Key: up to 255 printable ASCII characters.")
        try:
            code, body, replayed = run_once(
                poster_scope(request),
                key,
                fingerprint(request.data),
                lambda: (status.HTTP_201_CREATED, events.record(request)),
            )
        except KeyReused as e:
            raise IdempotencyKeyReused() from e
        return Response(body, status=code, headers={"Idempotent-Replayed": "true"} if replayed else None)


class NoEndpointView(APIView):
    """Any other URL under ``/api/v1/``: 404 in the API's error shape."""

    schema = None

    def _not_found(self, request, *args, **kwargs):
        hint = ""
        if not request.path.endswith("/"):
            try:
                if resolve(request.path + "/").url_name != "no-endpoint":
                    hint = f" Did you mean {request.path}/ ?"
            except Resolver404:
                pass
        raise exceptions.NotFound(f"No API endpoint at {request.path}.{hint}")

    get = post = put = patch = delete = head = options = _not_found
