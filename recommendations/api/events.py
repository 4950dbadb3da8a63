"""``POST events/``: validate a whole batch, then record it in one transaction (or nothing)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied

from .. import tracking
from ..conf import get_product_model
from ..events import record_interactions
from ..models import Interaction
from .errors import InvalidEvents, ServerOnlyEvents
from .serializers import EventEnvelopeSerializer, EventSerializer
from .shoppers import is_server_client, may_act_for_others, poster_scope, session_key

CLOCK_SKEW = timedelta(minutes=5)
#: Event types only server clients may post: a shopper's client could fake them at will, and
#: they weigh most in "popular" and in training. Shops record them from their order and
#: review code (``recommendations.events.record``) or through a server client.
SERVER_ONLY_TYPES = frozenset({Interaction.Kind.PURCHASE, Interaction.Kind.RATING})


class _Batch:
    """The events of one request, the errors found so far (by index), and who they are about."""

    def __init__(self, request, raw: list) -> None:
        self.request, self.total = request, len(raw)
        self.errors: dict[int, dict] = {}
        self.events: dict[int, dict] = {}
        for index, item in enumerate(raw):
            event = EventSerializer(data=item)
            if event.is_valid():
                self.events[index] = dict(event.validated_data)
            else:
                self.errors[index] = dict(event.errors)

    def fail(self, index: int, field: str, message: str) -> None:
        self.errors.setdefault(index, {}).setdefault(field, []).append(message)

    def raise_if_invalid(self) -> None:
        if self.errors:
            invalid = [{"index": i, "fields": self.errors[i]} for i in sorted(self.errors)]
            raise InvalidEvents(invalid, self.total)

    def valid(self):
        return [(i, e) for i, e in self.events.items() if i not in self.errors]


def record(request) -> dict:
    """Record the request's events (all or none); the body of the 201 response."""
    if not request.user.is_authenticated:
        session_key(request, create=True)  # outside the transaction: a rejected batch keeps the session
    envelope = EventEnvelopeSerializer(data=request.data)
    envelope.is_valid(raise_exception=True)
    batch = _Batch(request, envelope.validated_data["events"])
    _check_shoppers(batch)
    _check_existing(batch, "product", get_product_model())
    _check_existing(batch, "user", get_user_model())
    _check_ids(batch)
    batch.raise_if_invalid()
    with transaction.atomic():
        _record_clicks(batch)
        batch.raise_if_invalid()  # rolls back the clicks recorded so far
        stored = record_interactions([_interaction(request, event) for _, event in batch.valid()])
    results = [
        {"index": i, "id": event.get("id"), "interaction": row.pk}
        for (i, event), row in zip(batch.valid(), stored, strict=True)
    ]
    return {"accepted": len(results), "events": results}


def _check_shoppers(batch: _Batch) -> None:
    others, server = may_act_for_others(batch.request), is_server_client(batch.request)
    refused = [i for i, event in batch.events.items() if not server and event["type"] in SERVER_ONLY_TYPES]
    if refused:
        raise ServerOnlyEvents(refused, batch.total)
    for index, event in batch.events.items():
        if not others and ("user" in event or "session" in event):
            raise PermissionDenied("Only server clients (token) and staff may post events for a user or session.")
        if server and "user" not in event and "session" not in event:
            batch.fail(index, "user", "Name the shopper: user or session.")
        if not others and "timestamp" in event:
            batch.fail(index, "timestamp", "Only server clients may set the time of an event.")
        if event.get("timestamp") and event["timestamp"] > timezone.now() + CLOCK_SKEW:
            batch.fail(index, "timestamp", "The time of an event cannot be in the future.")


def _check_existing(batch: _Batch, field: str, model) -> None:
    ids = {event[field] for event in batch.events.values() if field in event}
    found = model.objects.in_bulk(list(ids)) if ids else {}
    for index, event in batch.events.items():
        if field in event and event[field] not in found:
            batch.fail(index, field, f"No {field} with id {event[field]}.")
        elif field in event:
            event[field] = found[event[field]]


def _check_ids(batch: _Batch) -> None:
    first: dict[str, int] = {}
    for index, event in batch.events.items():
        if "id" in event and first.setdefault(event["id"], index) != index:
            batch.fail(index, "id", f"Event id {event['id']!r} is repeated (first at index {first[event['id']]}).")


def _shopper(request, event: dict) -> tuple[object | None, str]:
    if "user" in event or "session" in event:
        return event.get("user"), event.get("session", "")
    user = request.user if request.user.is_authenticated else None
    return user, "" if user is not None else session_key(request, create=True)


def _record_clicks(batch: _Batch) -> None:
    """Count the clicks of the batch (once per impression; a replayed token counts nothing, without error)."""
    for index, event in batch.valid():
        if "click_token" not in event:
            continue
        user, session = _shopper(batch.request, event)
        try:
            token = tracking.read_click_token(event["click_token"])
            if token["product_id"] != event["product"].pk:
                batch.fail(index, "click_token", f"The click token is for product {token['product_id']}.")
                continue
            tracking.record_click(event["click_token"], user=user, session_key=session or None)
        except tracking.InvalidClickToken as e:
            batch.fail(index, "click_token", str(e))


def _interaction(request, event: dict) -> Interaction:
    user, session = _shopper(request, event)
    return Interaction(
        product=event["product"],
        kind=event["type"],
        value=event.get("value", 1.0),
        user=user,
        session_key=session,
        source=event.get("source") or "api",
        created_at=event.get("timestamp") or timezone.now(),
        event_key=f"{poster_scope(request)}:{event['id']}" if "id" in event else None,
    )
