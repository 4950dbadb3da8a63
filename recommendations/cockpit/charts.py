"""Tiny server-side SVG charts for the admin (no CDN, no JavaScript library).

``line_chart`` draws one line per series over shared x labels (days, model versions);
missing values (None) break the line. Every text is escaped; the result is safe markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#e07b39", "#5b9a47", "#b5485d", "#7b61b0", "#3f9da8", "#a58b2d", "#666666")

_W, _H = 720, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 150, 28, 44


def _nice_top(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _plain(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.3g}"


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    fmt: Callable[[float], str] = _plain,
) -> SafeString:
    """An SVG line chart of ``series`` (name -> one value per label) with axes and a legend."""
    values = [v for points in series.values() for v in points if v is not None and math.isfinite(v)]
    top = _nice_top(max(values, default=0.0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    n = len(labels)

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="visrec-chart" viewBox="0 0 {_W} {_H}" '
        f'width="100%" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for k in range(5):  # horizontal grid with values
        v = top * k / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{escape(fmt(v))}</text>'
        )
    every = max(1, math.ceil(n / 10))
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{_TOP + plot_h + 16}" font-size="10" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    if not values:
        parts.append(
            f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}" font-size="12" '
            f'text-anchor="middle" fill="#666">No data yet</text>'
        )
    for s, (name, points) in enumerate(series.items()):
        colour = PALETTE[s % len(PALETTE)]
        parts += _series(points, x, y, colour, name)
        ly = _TOP + 14 * s + 6
        parts.append(
            f'<rect x="{_W - _RIGHT + 12}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{_W - _RIGHT + 26}" y="{ly + 1}" font-size="11">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every text above is escaped)


def _series(points, x, y, colour: str, name: str) -> list[str]:
    """Polylines of one series (a gap at each missing value) and a dot per point."""
    out, run = [], []
    for i, v in enumerate(list(points) + [None]):
        if v is None or not math.isfinite(v):
            if len(run) > 1:
                coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
            run = []
            continue
        run.append((x(i), y(v)))
        out.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
            f"<title>{escape(name)}: {escape(_plain(v))}</title></circle>"
        )
    return out


def percent(value: float) -> str:
    """An axis label for a rate: ``0.025`` -> ``"2.5%"``."""
    return f"{100 * value:.3g}%"
