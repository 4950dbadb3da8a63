"""The simulated shop: a planned catalogue and shoppers with hidden visual tastes.

Pure numpy (no Django): :func:`plan_catalog` decides every product (type, colour,
pattern, price, stock, how its photo is drawn) and :func:`simulate_shoppers` lets
shoppers browse it for ``days`` days ending at a fixed reference date. Each shopper
prefers a few types, colours and patterns; which products they view follows those
tastes (with noise and a popularity skew) and every step of the funnel
view → click → add to cart → purchase is likelier the better a product matches.
The same seed always gives the same catalogue, tastes and events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

import numpy as np

from .drawing import BACKGROUNDS, COLOURS, PATTERNS, TYPES, ImageSpec

REFERENCE_END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 90
SKU_PREFIX = "DEMO-"

_TYPE_INFO: dict[str, dict] = {
    "t-shirt": {
        "code": "TSH",
        "category": "T-shirts",
        "price": (12, 39),
        "weight": 0.22,
        "material": "Soft combed-cotton jersey with a relaxed, unisex fit.",
    },
    "mug": {
        "code": "MUG",
        "category": "Mugs",
        "price": (7, 22),
        "weight": 0.16,
        "material": "Glazed stoneware, 330 ml, dishwasher and microwave safe.",
    },
    "sneaker": {
        "code": "SNK",
        "category": "Sneakers",
        "price": (45, 140),
        "weight": 0.16,
        "material": "Canvas upper on a cushioned rubber sole.",
    },
    "bag": {
        "code": "BAG",
        "category": "Bags",
        "price": (19, 119),
        "weight": 0.16,
        "material": "Sturdy woven fabric with reinforced handles.",
    },
    "poster": {
        "code": "PST",
        "category": "Posters",
        "price": (9, 49),
        "weight": 0.16,
        "material": "Giclée print on 200 g matte paper, framed.",
    },
    "cap": {
        "code": "CAP",
        "category": "Caps",
        "price": (12, 34),
        "weight": 0.14,
        "material": "Six-panel cotton twill with an adjustable strap.",
    },
}
_COLOUR_WEIGHTS = np.array([1.0, 0.8, 0.7, 0.9, 0.7, 1.1, 1.2, 0.7, 0.8, 0.8, 1.5, 1.4, 1.1])
_PATTERN_WORDS = {
    "solid": "plain",
    "stripes": "striped",
    "dots": "polka-dot",
    "checks": "checked",
    "diagonal": "diagonal-striped",
}
_LINES = ("Harbor", "Meadow", "Studio", "Weekend", "Heritage", "Nordic", "Coastal", "Urban", "Retro", "Essential")
_CENT_ENDINGS = ("0.99", "0.90", "0.50", "0.00")

#: Share of the catalogue made inactive, and (among the rest) out of stock.
INACTIVE_SHARE = 0.03
OUT_OF_STOCK_SHARE = 0.04


def category_name(product_type: str) -> str:
    """The category a product type belongs to, e.g. ``"T-shirts"``."""
    return _TYPE_INFO[product_type]["category"]


@dataclass(frozen=True)
class ProductPlan:
    """One planned demo product and the recipe of its photo."""

    sku: str
    title: str
    description: str
    price: Decimal
    stock: int
    is_active: bool
    image: ImageSpec

    @property
    def attributes(self) -> dict[str, str]:
        """The visual attributes stored on ``Product.attributes``."""
        s = self.image
        return {"type": s.type, "colour": s.colour, "pattern": s.pattern, "background": s.background}


class Event(NamedTuple):
    """One simulated interaction (indices into the users and the planned products)."""

    user: int
    product: int
    kind: str
    at: datetime
    session: int


@dataclass(frozen=True)
class Simulation:
    """Hidden tastes (per user index) and the events they produced, oldest first."""

    tastes: list[dict[str, list[str]]]
    events: list[Event]


# --- catalogue ---------------------------------------------------------------------


def plan_catalog(n_products: int, seed: int) -> list[ProductPlan]:
    """Plan ``n_products`` products deterministically for ``seed``.

    Parameters
    ----------
    n_products
        How many products to plan.
    seed
        Seed of the catalogue's random stream (independent of the shoppers' one).

    Returns
    -------
    list of ProductPlan
        Products with skus ``DEMO-<TYPE>-<00001>``; a few percent are inactive and
        a few percent out of stock (at least one of each when ``n_products >= 2``).
    """
    rng = np.random.default_rng([seed, 0])
    inactive, out_of_stock = _status_indices(rng, n_products)
    plans = []
    for i in range(n_products):
        spec = _image_spec(rng)
        stock = 0 if i in out_of_stock else int(rng.integers(1, 150))
        plans.append(_plan(rng, i, spec, stock, i not in inactive))
    return plans


def _status_indices(rng: np.random.Generator, n: int) -> tuple[set[int], set[int]]:
    order = rng.permutation(n)
    n_inactive = max(1, round(INACTIVE_SHARE * n)) if n >= 2 else 0
    n_out = max(1, round(OUT_OF_STOCK_SHARE * n)) if n >= 2 else 0
    return set(order[:n_inactive].tolist()), set(order[n_inactive : n_inactive + n_out].tolist())


def _image_spec(rng: np.random.Generator) -> ImageSpec:
    weights = np.array([_TYPE_INFO[t]["weight"] for t in TYPES])
    product_type = TYPES[rng.choice(len(TYPES), p=weights / weights.sum())]
    return ImageSpec(
        type=product_type,
        colour=list(COLOURS)[rng.choice(len(COLOURS), p=_COLOUR_WEIGHTS / _COLOUR_WEIGHTS.sum())],
        pattern=PATTERNS[rng.choice(len(PATTERNS), p=[0.32, 0.2, 0.16, 0.16, 0.16])],
        background=list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))],
        scale=round(float(rng.uniform(0.82, 1.04)), 3),
        dx=int(rng.integers(-22, 23)),
        dy=int(rng.integers(-16, 17)),
        flip=bool(rng.random() < 0.5),
        period=int(rng.choice([20, 26, 32, 40, 48])),
        phase=int(rng.integers(0, 48)),
        vertical=bool(rng.random() < 0.4),
        variant=int(rng.integers(0, 3)),
    )


def _plan(rng: np.random.Generator, index: int, spec: ImageSpec, stock: int, is_active: bool) -> ProductPlan:
    info = _TYPE_INFO[spec.type]
    low, high = info["price"]
    price = Decimal(int(rng.integers(low, high))) + Decimal(_CENT_ENDINGS[rng.integers(len(_CENT_ENDINGS))])
    line = _LINES[rng.integers(len(_LINES))]
    pattern = _PATTERN_WORDS[spec.pattern]
    article = "An" if spec.colour[0] in "aeiou" else "A"
    description = f"{article} {spec.colour} {spec.type} with a {pattern} look, from our {line} collection. "
    description += info["material"]
    return ProductPlan(
        sku=f"{SKU_PREFIX}{info['code']}-{index + 1:05d}",
        title=f"{spec.colour.capitalize()} {pattern} {spec.type}",
        description=description,
        price=price,
        stock=stock,
        is_active=is_active,
        image=spec,
    )


# --- shoppers ----------------------------------------------------------------------

_WEIGHTS = {"type": 1.7, "colour": 1.3, "pattern": 0.9}
_EXPLORATION = 0.2  # share of views drawn from popularity alone
_KIND_ORDER = {"view": 0, "click": 1, "add_to_cart": 2, "purchase": 3}


@dataclass(frozen=True)
class _Catalog:
    """Planned products as index arrays (what the simulation needs of them)."""

    types: np.ndarray
    colours: np.ndarray
    patterns: np.ndarray
    active: np.ndarray
    in_stock: np.ndarray

    @classmethod
    def of(cls, plans: list[ProductPlan]) -> _Catalog:
        return cls(
            types=np.array([TYPES.index(p.image.type) for p in plans], dtype=np.intp),
            colours=np.array([list(COLOURS).index(p.image.colour) for p in plans], dtype=np.intp),
            patterns=np.array([PATTERNS.index(p.image.pattern) for p in plans], dtype=np.intp),
            active=np.array([p.is_active for p in plans], dtype=bool),
            in_stock=np.array([p.stock > 0 for p in plans], dtype=bool),
        )


def simulate_shoppers(
    plans: list[ProductPlan], n_users: int, seed: int, *, end: datetime = REFERENCE_END, days: int = DAYS
) -> Simulation:
    """Give ``n_users`` shoppers hidden tastes and let them browse the catalogue.

    Parameters
    ----------
    plans
        The catalogue from :func:`plan_catalog`; only active products are browsed,
        out-of-stock products can be viewed and clicked but not bought.
    n_users
        Number of shoppers.
    seed
        Seed of the shoppers' random stream.
    end
        Timezone-aware end of the simulated period (exclusive).
    days
        Length of the simulated period.

    Returns
    -------
    Simulation
        Tastes per user index (``types``, ``colours``, ``patterns``, strongest first)
        and the events sorted by time.
    """
    rng = np.random.default_rng([seed, 1])
    catalog = _Catalog.of(plans)
    popularity = np.log(rng.lognormal(0.0, 0.9, size=len(plans)))
    start = end - timedelta(days=days)
    tastes, events = [], []
    for user in range(n_users):
        taste = _draw_taste(rng)
        tastes.append(taste)
        if catalog.active.any():
            events.extend(_browse(rng, user, taste, catalog, popularity, start, days))
    events.sort(key=lambda e: (e.at, e.user, e.session, e.product, _KIND_ORDER[e.kind]))
    return Simulation(tastes=[_taste_names(t) for t in tastes], events=events)


def _draw_taste(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def pick(n: int, low: int, high: int) -> np.ndarray:
        return rng.choice(n, size=int(rng.integers(low, high + 1)), replace=False)

    return {"types": pick(len(TYPES), 1, 2), "colours": pick(len(COLOURS), 2, 3), "patterns": pick(len(PATTERNS), 1, 2)}


def _taste_names(taste: dict[str, np.ndarray]) -> dict[str, list[str]]:
    colours = list(COLOURS)
    return {
        "types": [TYPES[i] for i in taste["types"]],
        "colours": [colours[i] for i in taste["colours"]],
        "patterns": [PATTERNS[i] for i in taste["patterns"]],
    }


def _match(taste: dict[str, np.ndarray], catalog: _Catalog) -> np.ndarray:
    """Weighted match of every product with a taste (0 = nothing in common)."""
    return (
        _WEIGHTS["type"] * np.isin(catalog.types, taste["types"])
        + _WEIGHTS["colour"] * np.isin(catalog.colours, taste["colours"])
        + _WEIGHTS["pattern"] * np.isin(catalog.patterns, taste["patterns"])
    )


def _softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    z = np.where(allowed, logits, -np.inf)
    z = np.exp(z - z.max())
    return z / z.sum()


def _view_distribution(match: np.ndarray, catalog: _Catalog, popularity: np.ndarray) -> np.ndarray:
    """Probability of viewing each product: taste-driven, mixed with popularity."""
    tasteful = _softmax(match + popularity, catalog.active)
    return (1 - _EXPLORATION) * tasteful + _EXPLORATION * _softmax(popularity, catalog.active)


def _browse(
    rng: np.random.Generator,
    user: int,
    taste: dict[str, np.ndarray],
    catalog: _Catalog,
    popularity: np.ndarray,
    start: datetime,
    days: int,
) -> list[Event]:
    """All sessions of one shopper: views, then the funnel steps that follow them."""
    match = _match(taste, catalog)
    p_view = _view_distribution(match, catalog, popularity)
    n_sessions = 1 + int(rng.poisson(7.0 * rng.lognormal(0.0, 0.5)))
    session_starts = np.sort(rng.uniform(0, days * 86400 - 4 * 3600, size=n_sessions))
    events: list[Event] = []
    for session, offset in enumerate(session_starts):
        products = rng.choice(len(p_view), size=1 + int(rng.poisson(5.0)), p=p_view)
        at = start + timedelta(seconds=int(offset))
        for product in products.tolist():
            at += timedelta(seconds=int(rng.integers(5, 90)))
            events.extend(_funnel(rng, user, session, product, at, match[product] / sum(_WEIGHTS.values()), catalog))
    return events


def _funnel(
    rng: np.random.Generator, user: int, session: int, product: int, at: datetime, fit: float, catalog: _Catalog
) -> list[Event]:
    """A view and, with probabilities that grow with ``fit`` (0..1), click, cart, purchase."""
    steps = [
        ("view", 1.0),
        ("click", 0.08 + 0.34 * fit),
        ("add_to_cart", 0.08 + 0.30 * fit),
        ("purchase", 0.30 + 0.35 * fit),
    ]
    events = []
    draws = rng.random(len(steps))
    for (kind, probability), draw in zip(steps, draws, strict=True):
        if draw >= probability or (kind == "add_to_cart" and not catalog.in_stock[product]):
            break
        events.append(Event(user, product, kind, at, session))
        at += timedelta(seconds=int(rng.integers(3, 240)))
    return events
