"""API serializers: query parameters and request bodies in, recommendation lists out."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rest_framework import serializers

from ..models import Interaction
from ..serving import Because, product_image_url

MAX_EVENTS = 100


@dataclass(frozen=True)
class ListedItem:
    """One item of a served list: the recommendation, its position and its click token."""

    product: object
    score: float
    reason: str
    position: int
    click_token: str
    because: Because | None = None
    why: str = ""
    shares: tuple[str, ...] = ()


class BecauseSerializer(serializers.Serializer):
    """The product of the shopper's own history that drew a "for you" item in (serialises :class:`Because`)."""

    product = serializers.IntegerField(source="product_id", help_text="The history product's id")
    title = serializers.CharField()
    image_url = serializers.SerializerMethodField(help_text="Its primary image (a thumbnail to show)")
    event = serializers.CharField(help_text='What the shopper did: "view", "click", "add_to_cart", "purchase", ...')

    def get_image_url(self, obj) -> str | None:
        return _absolute(self.context, obj.image_url)


def _absolute(context: dict, url: str | None) -> str | None:
    """``url`` made absolute for the serializer context's request (as it is without one)."""
    request = context.get("request")
    return request.build_absolute_uri(url) if url and request else url


class RecommendedProductSerializer(serializers.Serializer):
    """A product in a recommendation list (serialises :class:`ListedItem`)."""

    id = serializers.IntegerField(source="product.pk")
    sku = serializers.CharField(source="product.sku")
    title = serializers.CharField(source="product.title")
    price = serializers.DecimalField(source="product.price", max_digits=12, decimal_places=2)
    currency = serializers.CharField(source="product.currency")
    url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    score = serializers.FloatField()
    reason = serializers.CharField(help_text='What put it here: "visual", "model", "session", "popular", ...')
    position = serializers.IntegerField(help_text="0-based position in the list")
    click_token = serializers.CharField(help_text='Report a click with POST events/ {"type": "click", ...}')
    because = BecauseSerializer(
        allow_null=True,
        help_text='"For you" items ranked from the shopper\'s history: the history product whose image is nearest '
        "this one's, and what the shopper did with it; null otherwise (trending, popular, pinned, other lists)",
    )
    why = serializers.CharField(
        help_text='Why it is shown, for shoppers: "history" (see because), "trending", "popular", "pinned", '
        '"similar", "recently-viewed"'
    )
    shares = serializers.ListField(
        child=serializers.CharField(),
        help_text='Similar items: what the item shares with the product, "category" and/or "colour" (close colour, '
        "with a colour descriptor backbone); empty otherwise",
    )

    def get_url(self, obj) -> str:
        return _absolute(self.context, obj.product.get_absolute_url())

    def get_image_url(self, obj) -> str | None:
        return _absolute(self.context, product_image_url(obj.product))


def listed_items_data(items: list[ListedItem], request=None) -> list[dict]:
    """What ``RecommendedProductSerializer(items, many=True).data`` gives, built directly.

    The serializer documents the shape (OpenAPI); this builds it without DRF's per-field
    machinery, which costs more than the rest of a cached API call. A test keeps the two
    equal.
    """
    site = request.build_absolute_uri("/")[:-1] if request is not None else ""

    def absolute(url: str | None) -> str | None:
        return site + url if url and site and url.startswith("/") and not url.startswith("//") else url

    out = []
    for item in items:
        product = item.product
        out.append(
            {
                "id": product.pk,
                "sku": product.sku,
                "title": product.title,
                "price": _money(product.price),
                "currency": product.currency,
                "url": absolute(product.get_absolute_url()),
                "image_url": absolute(product_image_url(product)),
                "score": float(item.score),
                "reason": item.reason,
                "position": item.position,
                "click_token": item.click_token,
                "because": _because_data(item.because, absolute),
                "why": item.why,
                "shares": list(item.shares),
            }
        )
    return out


def _because_data(because: Because | None, absolute) -> dict | None:
    """What :class:`BecauseSerializer` gives for ``because`` (None stays None)."""
    if because is None:
        return None
    return {
        "product": because.product_id,
        "title": because.title,
        "image_url": absolute(because.image_url),
        "event": because.event,
    }


def _money(value) -> str:
    """A price as DRF's ``DecimalField(decimal_places=2)`` renders it (``"12.50"``)."""
    return format(Decimal(value).quantize(Decimal("0.01")), "f")


class RecommendationListSerializer(serializers.Serializer):
    """A served list: what produced it, the impression to report clicks against, the items."""

    widget = serializers.CharField()
    impression = serializers.UUIDField(allow_null=True, help_text="Impression id (null when the list is empty)")
    source = serializers.CharField(help_text='"model", "session", "visual", "trending", "popular", ...')
    model_version = serializers.IntegerField(allow_null=True)
    embedding_version = serializers.CharField(allow_null=True)
    count = serializers.IntegerField()
    results = RecommendedProductSerializer(many=True)


class SimilarListSerializer(RecommendationListSerializer):
    product = serializers.IntegerField(help_text="The product the list is similar to")


class ComplementListSerializer(RecommendationListSerializer):
    product = serializers.IntegerField(help_text="The product the list goes with (its own category left out)")


class PopularPageSerializer(RecommendationListSerializer):
    next = serializers.URLField(allow_null=True, help_text="The next page, null on the last one")
    previous = serializers.URLField(allow_null=True)


# -- query parameters -------------------------------------------------------------------------


class ListParamsSerializer(serializers.Serializer):
    """``limit`` between 1 and ``max_limit``; ``category`` by id or slug (resolved by the view)."""

    limit = serializers.IntegerField(required=False, min_value=1)
    category = serializers.CharField(required=False, max_length=200, help_text="Category id or slug")

    def __init__(self, *args, max_limit: int = 100, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["limit"] = serializers.IntegerField(required=False, min_value=1, max_value=max_limit)


class PopularParamsSerializer(ListParamsSerializer):
    offset = serializers.IntegerField(required=False, min_value=0, max_value=1000, default=0)


class ForYouParamsSerializer(ListParamsSerializer):
    user = serializers.IntegerField(required=False, min_value=1, help_text="Staff and server clients only")
    session = serializers.CharField(required=False, max_length=64, help_text="Staff and server clients only")


class SearchByImageSerializer(ListParamsSerializer):
    image = serializers.FileField(help_text="A JPEG, PNG, WebP, GIF, BMP or TIFF photo")


# -- events -----------------------------------------------------------------------------------


class EventSerializer(serializers.Serializer):
    """One shopper action. Context-free checks here; products, users and click tokens in the view."""

    type = serializers.ChoiceField(choices=Interaction.Kind.values)
    product = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    value = serializers.FloatField(
        required=False, help_text="The rating (1..5, required for ratings) or a quantity (default 1)"
    )
    id = serializers.RegexField(
        r"^[A-Za-z0-9._:\-]+$",
        required=False,
        max_length=64,
        help_text="Client event id: an event whose id was recorded before is not recorded again",
    )
    click_token = serializers.CharField(required=False, max_length=1000, help_text="From a served list (clicks)")
    source = serializers.CharField(required=False, max_length=64, allow_blank=True, help_text="Widget or page")
    user = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1, help_text="Server clients")
    session = serializers.CharField(required=False, max_length=64, help_text="Server clients")
    timestamp = serializers.DateTimeField(required=False, help_text="When it happened (server clients; default now)")

    def validate(self, attrs: dict) -> dict:
        kind, value = attrs["type"], attrs.get("value")
        if kind == Interaction.Kind.RATING:
            if value is None or not 1 <= value <= 5:
                raise serializers.ValidationError({"value": "A rating needs a value from 1 to 5."})
        elif value is not None and not 0 < value <= 10_000:
            raise serializers.ValidationError({"value": "A quantity must be more than 0 and at most 10000."})
        if "click_token" in attrs and kind != Interaction.Kind.CLICK:
            raise serializers.ValidationError({"click_token": "Only click events carry a click token."})
        return attrs


class EventBatchSerializer(serializers.Serializer):
    """The request body of ``POST events/``."""

    events = EventSerializer(many=True, min_length=1, max_length=MAX_EVENTS, help_text=f"1 to {MAX_EVENTS} events")


class EventEnvelopeSerializer(serializers.Serializer):
    """The outside of an event batch; :class:`EventSerializer` checks each event by its index."""

    events = serializers.ListField(min_length=1, max_length=MAX_EVENTS)


class RecordedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.CharField(allow_null=True)
    interaction = serializers.IntegerField(help_text="The stored interaction")


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    events = RecordedEventSerializer(many=True)


# -- errors -----------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable error code")
    message = serializers.CharField()
    fields = serializers.JSONField(required=False, help_text="Validation errors per field")
    invalid = serializers.ListField(
        child=serializers.JSONField(), required=False, help_text="Invalid events: [{index, fields}]"
    )
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (429)")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
