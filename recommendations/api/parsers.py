"""Request parsers that refuse an oversized body from its ``Content-Length``, before reading it."""

from __future__ import annotations

from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request

from ..conf import visrec_settings
from .errors import PayloadTooLarge

# Room for the multipart boundaries and the small form fields around the image.
MULTIPART_OVERHEAD = 64 * 1024
MAX_JSON_BYTES = 1024 * 1024


def _refuse_if_longer(parser_context: dict | None, limit: int) -> None:
    request = (parser_context or {}).get("request")
    meta = request.META if isinstance(request, Request) else {}
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
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
        _refuse_if_longer(parser_context, int(visrec_settings.MAX_IMAGE_BYTES) + MULTIPART_OVERHEAD)
        return super().parse(stream, media_type, parser_context)
