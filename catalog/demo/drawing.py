"""Product photos drawn with PIL: the visual vocabulary of the demo catalogue.

Every picture is a pure function of an :class:`ImageSpec` (no randomness here), so
the same spec gives the same JPEG bytes in any process. The vocabulary (types,
colours, patterns, backgrounds) is shared with the shopper simulation, whose tastes
are expressed in the same words.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw

SIZE = 400
JPEG_QUALITY = 88

Colour = tuple[int, int, int]

TYPES: tuple[str, ...] = ("t-shirt", "mug", "sneaker", "bag", "poster", "cap")

COLOURS: dict[str, Colour] = {
    "red": (200, 32, 40),
    "orange": (238, 128, 30),
    "yellow": (244, 204, 40),
    "green": (42, 150, 72),
    "teal": (22, 140, 140),
    "blue": (40, 92, 200),
    "navy": (26, 36, 92),
    "purple": (122, 60, 162),
    "pink": (238, 120, 170),
    "brown": (122, 76, 40),
    "black": (32, 32, 34),
    "white": (244, 244, 238),
    "grey": (140, 140, 146),
}

PATTERNS: tuple[str, ...] = ("solid", "stripes", "dots", "checks", "diagonal")

#: Background name -> (top colour, bottom colour) of a vertical gradient.
BACKGROUNDS: dict[str, tuple[Colour, Colour]] = {
    "white": ((250, 250, 248), (244, 244, 242)),
    "light-grey": ((230, 231, 233), (220, 221, 224)),
    "beige": ((240, 228, 206), (230, 216, 190)),
    "sky": ((218, 233, 248), (200, 220, 240)),
    "mint": ((218, 242, 228), (200, 232, 214)),
    "blush": ((248, 224, 230), (238, 206, 214)),
    "sand-gradient": ((246, 238, 222), (214, 196, 164)),
    "studio-gradient": ((236, 238, 242), (170, 176, 186)),
    "charcoal": ((70, 72, 78), (48, 50, 56)),
}

_LIGHT: Colour = (250, 250, 245)
_DARK: Colour = (22, 22, 26)


@dataclass(frozen=True)
class ImageSpec:
    """Everything needed to draw one product photo.

    Parameters
    ----------
    type, colour, pattern, background
        Names from :data:`TYPES`, :data:`COLOURS`, :data:`PATTERNS`, :data:`BACKGROUNDS`.
    scale
        Size of the product relative to the default framing (about 0.8 to 1.05).
    dx, dy
        Offset of the product from the centre, in pixels.
    flip
        Mirror asymmetric products (mug handle, sneaker toe, cap brim).
    period
        Pattern period in pixels.
    phase
        Pattern offset in pixels.
    vertical
        Stripes run vertically instead of horizontally.
    variant
        A per-type style variant (0, 1 or 2): sleeve length, high-top, frame colour...
    """

    type: str
    colour: str
    pattern: str
    background: str
    scale: float = 1.0
    dx: int = 0
    dy: int = 0
    flip: bool = False
    period: int = 32
    phase: int = 0
    vertical: bool = False
    variant: int = 0


def draw_product(spec: ImageSpec) -> bytes:
    """Draw the product photo described by ``spec`` and return it as JPEG bytes."""
    canvas = _background(spec.background)
    draw = ImageDraw.Draw(canvas)
    geometry = _Geometry(spec)
    _draw_shadow(draw, geometry, spec)
    if spec.type == "poster":
        _draw_poster_frame(draw, geometry, spec)
    canvas.paste(_fabric(spec), (0, 0), _shape_mask(spec, geometry))
    _DETAILS[spec.type](draw, geometry, spec)
    return _encode(canvas)


def product_mask(spec: ImageSpec) -> np.ndarray:
    """Where the product is in the photo of ``spec``: a ``(SIZE, SIZE)`` bool array (its shape, no shadow)."""
    return np.asarray(_shape_mask(spec, _Geometry(spec))) > 0


def _shape_mask(spec: ImageSpec, geometry: _Geometry) -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    _SHAPES[spec.type](ImageDraw.Draw(mask), geometry, spec)
    return mask


def accent_of(colour: Colour) -> Colour:
    """The second colour of a pattern: a light tint of dark colours, a dark shade of light ones."""
    target = _LIGHT if _luminance(colour) < 150 else _DARK
    return _mix(colour, target, 0.8)


def _luminance(colour: Colour) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --- background, fabric and shading ------------------------------------------------


@cache
def _background_image(name: str) -> Image.Image:
    top, bottom = BACKGROUNDS[name]
    t = np.linspace(0.0, 1.0, SIZE, dtype=np.float32)[:, None]
    rows = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    pixels = np.broadcast_to(rows[:, None, :], (SIZE, SIZE, 3))
    return Image.fromarray(np.ascontiguousarray(pixels.round().astype(np.uint8)), "RGB")


def _background(name: str) -> Image.Image:
    return _background_image(name).copy()


@cache
def _shade() -> Image.Image:
    """A soft light from the top left, multiplied into every product surface."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    light = np.clip(255 * (1.0 - 0.13 * x - 0.07 * y), 0, 255).astype(np.uint8)
    return Image.fromarray(light, "L").convert("RGB")


def _pattern_tile(spec: ImageSpec) -> np.ndarray:
    """One period of the pattern: True where it shows its accent colour."""
    p = spec.period
    size = 2 * p if spec.pattern == "checks" else p
    y, x = np.ogrid[0:size, 0:size]
    x, y = x + spec.phase, y + spec.phase
    if spec.pattern == "stripes":
        return np.broadcast_to(((x if spec.vertical else y) % p) < p * 0.4, (size, size))
    if spec.pattern == "dots":
        u, v = x % p - p / 2, y % p - p / 2
        return u * u + v * v < (p * 0.27) ** 2
    if spec.pattern == "checks":
        return ((x // p + y // p) % 2) == 0
    if spec.pattern == "diagonal":
        return ((x + y) % p) < p * 0.4
    return np.zeros((size, size), dtype=bool)


def _pattern_mask(spec: ImageSpec) -> Image.Image:
    """The pattern over the whole canvas as an ``L`` mask (255 = accent colour)."""
    tile = _pattern_tile(spec).astype(np.uint8) * 255
    reps = -(-SIZE // tile.shape[0])
    return Image.fromarray(np.ascontiguousarray(np.tile(tile, (reps, reps))[:SIZE, :SIZE]), "L")


def _fabric(spec: ImageSpec) -> Image.Image:
    """The product's surface: colour, pattern and shading over the whole canvas."""
    base = COLOURS[spec.colour]
    surface = Image.new("RGB", (SIZE, SIZE), base)
    if spec.pattern != "solid":
        surface.paste(accent_of(base), (0, 0, SIZE, SIZE), _pattern_mask(spec))
    return ImageChops.multiply(surface, _shade())


# --- geometry ----------------------------------------------------------------------


class _Geometry:
    """Maps unit coordinates (0..1, product centred at 0.5) to canvas pixels."""

    def __init__(self, spec: ImageSpec) -> None:
        self.scale = SIZE * spec.scale
        self.cx = SIZE / 2 + spec.dx
        self.cy = SIZE / 2 + spec.dy
        self.flip = spec.flip

    def pt(self, x: float, y: float) -> tuple[float, float]:
        """One point in pixels."""
        if self.flip:
            x = 1 - x
        return self.cx + (x - 0.5) * self.scale, self.cy + (y - 0.5) * self.scale

    def pts(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Several points in pixels."""
        return [self.pt(x, y) for x, y in points]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        """A bounding box in pixels, corners ordered as PIL expects."""
        (a, b), (c, d) = self.pt(x0, y0), self.pt(x1, y1)
        return min(a, c), min(b, d), max(a, c), max(b, d)

    def px(self, length: float) -> int:
        """A length (line width) in pixels."""
        return max(1, round(length * self.scale))


def _outline(spec: ImageSpec) -> Colour:
    return _mix(COLOURS[spec.colour], _DARK, 0.55)


def _draw_shadow(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    top = BACKGROUNDS[spec.background][1]
    if spec.type == "poster":
        draw.rectangle(g.box(0.25, 0.15, 0.81, 0.91), fill=_mix(top, _DARK, 0.18))
        return
    draw.ellipse(g.box(0.16, 0.84, 0.84, 0.94), fill=_mix(top, _DARK, 0.16))


# --- t-shirt -----------------------------------------------------------------------


def _tshirt_points(spec: ImageSpec) -> list[tuple[float, float]]:
    sleeve = (0.10, 0.47) if spec.variant == 2 else (0.15, 0.40)
    neck = 0.27 if spec.variant == 1 else 0.21
    left = [(0.31, 0.86), (0.31, 0.38), (sleeve[0] + 0.08, sleeve[1] + 0.03), sleeve, (0.34, 0.16), (0.42, 0.15)]
    right = [(1 - x, y) for x, y in reversed(left)]
    return [*left, (0.50, neck), *right]


def _tshirt(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.polygon(g.pts(_tshirt_points(spec)), fill=255)


def _tshirt_details(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    points = g.pts(_tshirt_points(spec))
    draw.line([*points, points[0]], fill=_outline(spec), width=g.px(0.008), joint="curve")
    collar = g.pts([(0.42, 0.15), (0.50, 0.21 if spec.variant != 1 else 0.27), (0.58, 0.15)])
    draw.line(collar, fill=_outline(spec), width=g.px(0.014), joint="curve")


# --- mug ---------------------------------------------------------------------------


def _mug(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    reach = 0.84 if spec.variant == 2 else 0.80
    draw.ellipse(g.box(0.56, 0.38, reach, 0.70), fill=255)
    draw.ellipse(g.box(0.62, 0.45, reach - 0.06, 0.63), fill=0)
    draw.rounded_rectangle(g.box(0.24, 0.28, 0.66, 0.82), radius=g.px(0.05), fill=255)


def _mug_details(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.ellipse(g.box(0.24, 0.25, 0.66, 0.31), fill=_outline(spec))
    draw.ellipse(g.box(0.255, 0.26, 0.645, 0.30), fill=_mix(COLOURS[spec.colour], _DARK, 0.75))
    draw.rounded_rectangle(g.box(0.24, 0.28, 0.66, 0.82), radius=g.px(0.05), outline=_outline(spec), width=2)


# --- sneaker -----------------------------------------------------------------------


def _sneaker_points(spec: ImageSpec) -> list[tuple[float, float]]:
    collar = 0.24 if spec.variant == 1 else 0.34
    return [
        (0.12, 0.66),
        (0.16, 0.55),
        (0.34, 0.50),
        (0.50, 0.42),
        (0.56, collar),
        (0.76, collar),
        (0.84, 0.44),
        (0.88, 0.66),
    ]


def _sneaker(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.polygon(g.pts(_sneaker_points(spec)), fill=255)


def _sneaker_details(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    outline = _outline(spec)
    points = g.pts(_sneaker_points(spec))
    draw.line([*points, points[0]], fill=outline, width=g.px(0.007), joint="curve")
    sole = (238, 236, 230) if spec.variant != 2 else (40, 40, 42)
    draw.rounded_rectangle(g.box(0.10, 0.65, 0.90, 0.75), radius=g.px(0.03), fill=sole, outline=outline, width=2)
    for i in range(4):
        x = 0.40 + i * 0.045
        draw.line(g.pts([(x, 0.47 - i * 0.02), (x + 0.05, 0.51 - i * 0.02)]), fill=_LIGHT, width=g.px(0.010))


# --- bag ---------------------------------------------------------------------------


def _bag_body(spec: ImageSpec) -> list[tuple[float, float]]:
    if spec.variant == 1:
        return [(0.22, 0.40), (0.78, 0.40), (0.78, 0.84), (0.22, 0.84)]
    return [(0.26, 0.38), (0.74, 0.38), (0.81, 0.86), (0.19, 0.86)]


def _bag(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.polygon(g.pts(_bag_body(spec)), fill=255)


def _bag_details(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    outline = _outline(spec)
    handle = g.box(0.34, 0.16, 0.66, 0.60) if spec.variant != 2 else g.box(0.24, 0.06, 0.76, 0.70)
    draw.arc(handle, 180, 360, fill=outline, width=g.px(0.022))
    points = g.pts(_bag_body(spec))
    draw.line([*points, points[0]], fill=outline, width=g.px(0.008), joint="curve")
    if spec.variant == 1:
        draw.polygon(g.pts([(0.22, 0.40), (0.78, 0.40), (0.70, 0.58), (0.30, 0.58)]), fill=outline)


# --- poster ------------------------------------------------------------------------

_FRAMES: tuple[Colour, ...] = ((28, 28, 30), (164, 116, 70), (248, 248, 244))


def _draw_poster_frame(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.rectangle(g.box(0.22, 0.12, 0.78, 0.88), fill=_FRAMES[spec.variant % 3], outline=(90, 90, 90))
    draw.rectangle(g.box(0.25, 0.15, 0.75, 0.85), fill=(246, 246, 242))


def _poster(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.rectangle(g.box(0.29, 0.19, 0.71, 0.81), fill=255)


def _poster_details(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    draw.line(g.pts([(0.50, 0.12), (0.50, 0.02)]), fill=(120, 120, 120), width=2)


# --- cap ---------------------------------------------------------------------------


def _cap(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    brim = 0.96 if spec.variant == 2 else 0.90
    draw.ellipse(g.box(0.46, 0.58, brim, 0.70), fill=255)
    draw.pieslice(g.box(0.18, 0.30, 0.76, 0.94), 180, 360, fill=255)
    draw.rectangle(g.box(0.18, 0.60, 0.76, 0.66), fill=255)


def _cap_details(draw: ImageDraw.ImageDraw, g: _Geometry, spec: ImageSpec) -> None:
    outline = _outline(spec)
    draw.arc(g.box(0.18, 0.30, 0.76, 0.94), 180, 360, fill=outline, width=g.px(0.008))
    draw.line(g.pts([(0.47, 0.31), (0.47, 0.62)]), fill=outline, width=g.px(0.006))
    draw.ellipse(g.box(0.45, 0.28, 0.49, 0.32), fill=outline)
    if spec.variant == 1:
        draw.rectangle(g.box(0.18, 0.58, 0.76, 0.63), fill=accent_of(COLOURS[spec.colour]))


_Painter = Callable[[ImageDraw.ImageDraw, _Geometry, ImageSpec], None]

_SHAPES: dict[str, _Painter] = {
    "t-shirt": _tshirt,
    "mug": _mug,
    "sneaker": _sneaker,
    "bag": _bag,
    "poster": _poster,
    "cap": _cap,
}

_DETAILS: dict[str, _Painter] = {
    "t-shirt": _tshirt_details,
    "mug": _mug_details,
    "sneaker": _sneaker_details,
    "bag": _bag_details,
    "poster": _poster_details,
    "cap": _cap_details,
}
