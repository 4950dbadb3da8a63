"""Request parsers that refuse an oversized body before reading it, and JSON nested too deeply.

The size comes from ``Content-Length``; JSON nested deeper than ``MAX_JSON_DEPTH`` is a
400 ``malformed_request``, never a ``RecursionError``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request

from ..uploads import content_length, image_body_limit, keep_in_memory
from .errors import PayloadTooLarge

MAX_JSON_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


def _refuse_if_longer(parser_context: dict | None, limit: int) -> None:
    request = (parser_context or {}).get("request")
    length = content_length(request) if isinstance(request, Request) else 0
    if length is None:
        raise ParseError("The request's Content-Length is not a number.")
    if length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; at most {limit} are accepted.")


def nesting_depth(data: Any) -> int:
    """How deeply lists and objects nest in parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class LimitedJSONParser(JSONParser):
    """JSON bodies of at most ``MAX_JSON_BYTES`` nesting at most ``MAX_JSON_DEPTH`` levels (an event batch: 3)."""

    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_if_longer(parser_context, MAX_JSON_BYTES)
        too_deep = f"The JSON body nests lists or objects more than {MAX_JSON_DEPTH} levels deep."
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # the decoder gave up long before the whole body was read
            raise ParseError(too_deep) from None
        if nesting_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(too_deep)
        return data


class ImageUploadParser(MultiPartParser):
    """Multipart uploads of one image of at most ``VISREC["MAX_IMAGE_BYTES"]``."""

    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_if_longer(parser_context, image_body_limit())
        keep_in_memory(parser_context["request"])  # checked above: no temporary file, so no disk needed
        return super().parse(stream, media_type, parser_context)
