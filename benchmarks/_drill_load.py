"""The shoppers of the fault drills: a request mix, the files they upload, the events they post.

:class:`Traffic` is the ``requests(i)`` callable of ``_serving_load.run_open_loop``: request
``i`` is drawn from a fixed mix (seeded) of product pages (popular products more often,
Zipf), widget API calls (similar items, for you), event batches with idempotency keys
(server clients and anonymous shoppers; a tenth of the server batches are retries of an
earlier batch, same key and body) and search-by-photo uploads (the API and the HTML
page), a third of them hostile. It remembers each request's kind and the event ids it
carried, so the drill can count the events acknowledged with a 2xx and look for them in
the database.
"""

from __future__ import annotations

import io
import json
import secrets
import struct
import threading
import zlib
from dataclasses import dataclass, field

import numpy as np

MIX = {
    "page": 0.47,
    "similar": 0.16,
    "for_you": 0.10,
    "events": 0.22,
    "upload_api": 0.04,
    "upload_page": 0.01,
}
UPLOADS = {  # what a search-by-photo request sends
    "photo": 0.65,  # a 256x256 JPEG
    "truncated": 0.10,  # the first 60 % of a JPEG
    "huge_header": 0.08,  # a tiny PNG whose header claims 100000 x 100000 pixels
    "huge_pixels": 0.02,  # a real 7000 x 7000 PNG (49 MP, under today's 50 MP limit), 62 KB
    "png16": 0.05,  # a 16-bit greyscale 3000 x 3000 PNG (24 KB file, large float decode)
    "big": 0.10,  # a 3 MB JPEG: spooled to the temporary folder before any check
}
EVENT_ID_PREFIX = "drill-"
CLIENT_ADDRESSES = 256  # X-Forwarded-For of this many shoppers


def jpeg(rng: np.random.Generator, size: int = 256, quality: int = 88, noise: float = 0.0) -> bytes:
    """A photo-like JPEG: a coloured gradient, a few blocks, optional noise (``noise`` makes it big)."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0, 255, 3)
    img = np.stack([base[c] * (1 - x) + rng.uniform(0, 255) * y for c in range(3)], axis=-1)
    for _ in range(4):
        x0, y0 = rng.integers(0, size - size // 4, 2)
        img[y0 : y0 + size // 4, x0 : x0 + size // 4] = rng.uniform(0, 255, 3)
    if noise:
        img = img + rng.normal(0, noise, img.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def _png(width: int, height: int, mode: str, fill) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, (width, height), fill).save(out, "PNG", optimize=False)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header (IHDR, CRC fixed) says ``width`` x ``height``: a decompression bomb's header."""
    data = bytearray(_png(1, 1, "RGB", (200, 10, 10)))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def png16(size: int = 3000) -> bytes:
    """A 16-bit greyscale PNG: a gradient, so it compresses to a small file."""
    from PIL import Image

    ramp = (np.arange(size, dtype=np.uint32) * 65535 // size).astype(np.uint16)
    out = io.BytesIO()
    Image.fromarray(np.tile(ramp, (size, 1))).save(out, "PNG")
    return out.getvalue()


def upload_files(seed: int = 0) -> dict[str, list[bytes]]:
    """The files of :data:`UPLOADS`, a few variants each (built once: the big ones take a second)."""
    rng = np.random.default_rng(seed)
    photos = [jpeg(rng) for _ in range(8)]
    return {
        "photo": photos,
        "truncated": [p[: int(len(p) * 0.6)] for p in photos[:3]],
        "huge_header": [png_claiming(100_000, 100_000)],
        "huge_pixels": [_png(7000, 7000, "L", 128)],
        "png16": [png16()],
        "big": [jpeg(rng, size=1800, quality=97, noise=40.0)],
    }


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type; ``files``: name -> (filename, bytes, type)."""
    boundary = "drill" + secrets.token_hex(12)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, content_type) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def zipf_weights(n: int, s: float = 1.1) -> np.ndarray:
    """Probabilities of ranks 1..n under Zipf's law with exponent ``s`` (a few products get most views)."""
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


@dataclass
class Traffic:
    """``requests(i)`` for ``run_open_loop``: the drill's mix, with what each request carried."""

    host: str
    products: list[int]
    token: str
    seed: int = 0
    files: dict[str, list[bytes]] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    variants: dict[int, str] = field(default_factory=dict)
    event_ids: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.files = self.files or upload_files(self.seed)
        order = self.rng.permutation(len(self.products))  # which products are the popular ones
        self.ranked = [self.products[j] for j in order]
        self.page_weights = zipf_weights(len(self.ranked))
        self.csrf = secrets.token_hex(16)  # a 32-character CSRF secret: cookie and form field alike
        self._server_batches: list[tuple[bytes, dict[str, str], list[str]]] = []
        self._next_event = 0
        self._lock = threading.Lock()

    # -- the mix ----------------------------------------------------------------------------
    def __call__(self, i: int):
        with self._lock:
            kind = str(self.rng.choice(list(MIX), p=list(MIX.values())))
            self.kinds[i] = kind
            return getattr(self, f"_{kind}")(i)

    def _headers(self, **extra: str) -> dict[str, str]:
        n = int(self.rng.integers(0, CLIENT_ADDRESSES))
        client = f"10.14.{n // 250}.{n % 250 + 1}"
        # As a TLS-terminating proxy in front of the shop would send them.
        return {"Host": self.host, "X-Forwarded-For": client, "X-Forwarded-Proto": "https", **extra}

    def product(self) -> int:
        return int(self.rng.choice(self.ranked, p=self.page_weights))

    def shopper(self) -> str:
        return f"drill-shopper-{self.rng.integers(0, 500)}"

    def _page(self, i: int):
        return (f"/product/{self.product()}/", self._headers(Accept="text/html"))

    def _similar(self, i: int):
        return (f"/api/v1/products/{self.product()}/similar/", self._headers())

    def _for_you(self, i: int):
        if self.rng.random() < 0.5:  # the shop's own server asks for a shopper
            return (f"/api/v1/recommendations/for-you/?session={self.shopper()}", self._auth())
        return ("/api/v1/recommendations/for-you/", self._headers())

    def _auth(self, **extra: str) -> dict[str, str]:
        return self._headers(Authorization=f"Token {self.token}", **extra)

    def warm_requests(self) -> list:
        """Requests that load what each web process loads lazily (the backbone, cached lists, pages)."""
        photo = ("warm.jpg", self.files["photo"][0], "image/jpeg")
        requests = []
        for pk in self.ranked[:40]:
            requests.append((f"/product/{pk}/", self._headers(Accept="text/html")))
            requests.append((f"/api/v1/products/{pk}/similar/", self._headers()))
        for _ in range(12):
            body, content_type = multipart({}, {"image": photo})
            requests.append(("POST", "/api/v1/search/by-image/", self._headers(**{"Content-Type": content_type}), body))
        return requests

    # -- events -----------------------------------------------------------------------------
    def _event_ids(self, n: int) -> list[str]:
        first, self._next_event = self._next_event, self._next_event + n
        return [f"{EVENT_ID_PREFIX}{self.seed}-{k}" for k in range(first, first + n)]

    def _events(self, i: int):
        if self._server_batches and self.rng.random() < 0.05:  # a server client retries a batch
            body, headers, ids = self._server_batches[int(self.rng.integers(0, len(self._server_batches)))]
            self.kinds[i] = "events_retry"
            self.event_ids[i] = ids
            return ("POST", "/api/v1/events/", {**headers, **self._headers()}, body)
        server = self.rng.random() < 0.5
        ids = self._event_ids(int(self.rng.integers(1, 6)))
        kinds = ["view", "add_to_cart", "purchase"] if server else ["view", "add_to_cart"]
        events = []
        shopper = self.shopper()
        for event_id in ids:
            event = {"type": str(self.rng.choice(kinds)), "product": self.product(), "id": event_id}
            if server:
                event["session"] = shopper
            events.append(event)
        body = json.dumps({"events": events}).encode()
        key = {"Idempotency-Key": f"drill-batch-{self.seed}-{i}", "Content-Type": "application/json"}
        self.event_ids[i] = ids
        if server:
            headers = {**key, "Authorization": f"Token {self.token}"}
            self._server_batches.append((body, headers, ids))
            return ("POST", "/api/v1/events/", {**self._headers(), **headers}, body)
        return ("POST", "/api/v1/events/", self._headers(**key), body)

    # -- search by photo --------------------------------------------------------------------
    def _upload(self, i: int) -> tuple[str, bytes, str]:
        variant = str(self.rng.choice(list(UPLOADS), p=list(UPLOADS.values())))
        self.variants[i] = variant
        choices = self.files[variant]
        data = choices[int(self.rng.integers(0, len(choices)))]
        is_png = data.startswith(b"\x89PNG")
        return ("upload.png" if is_png else "upload.jpg", data, "image/png" if is_png else "image/jpeg")

    def _upload_api(self, i: int):
        body, content_type = multipart({}, {"image": self._upload(i)})
        return ("POST", "/api/v1/search/by-image/", self._headers(**{"Content-Type": content_type}), body)

    def _upload_page(self, i: int):
        body, content_type = multipart({"csrfmiddlewaretoken": self.csrf}, {"photo": self._upload(i)})
        headers = self._headers(
            **{
                "Content-Type": content_type,
                "Cookie": f"csrftoken={self.csrf}",
                "Referer": f"https://{self.host}/search/photo/",
                "Accept": "text/html",
            }
        )
        return ("POST", "/search/photo/", headers, body)
