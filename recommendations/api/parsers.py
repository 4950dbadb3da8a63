"""Request parsers that refuse an oversized body from its ``Content-Length``, before reading it."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request

from ..uploads import content_length, image_body_limit
from .errors import PayloadTooLarge

MAX_JSON_BYTES = 1024 * 1024


def _refuse_if_longer(parser_context: dict | None, limit: int) -> None:
    request = (parser_context or {}).get("request")
    length = content_length(request) if isinstance(request, Request) else 0
    if length is None:
        raise ParseError("The request's Content-Length is not a number.")
    if length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; at most {limit} are accepted.")


class LimitedJSONParser(JSONParser):
    """JSON bodies of at most ``MAX_JSON_BYTES`` (an event batch is far smaller)."""

    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_if_longer(parser_context, MAX_JSON_BYTES)
        return super().parse(stream, media_type, parser_context)


class ImageUploadParser(MultiPartParser):
    """Multipart uploads of one image of at most ``VISREC["MAX_IMAGE_BYTES"]``."""

    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_if_longer(parser_context, image_body_limit())
        return super().parse(stream, media_type, parser_context)
