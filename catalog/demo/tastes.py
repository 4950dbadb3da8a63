"""Check recommendations against the demo shoppers' hidden tastes (pure Python)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def matches(taste: Mapping[str, Sequence[str]], attributes: Mapping[str, str]) -> bool:
    """A product fits a taste when its type or its colour is one the shopper prefers."""
    return attributes.get("type") in taste.get("types", ()) or attributes.get("colour") in taste.get("colours", ())


def taste_recovery(
    recommended: Mapping[str, Sequence[int]],
    tastes: Mapping[str, Mapping[str, Sequence[str]]],
    attributes: Mapping[int, Mapping[str, str]],
) -> tuple[float, float]:
    """Share of recommended products that fit the shopper's hidden taste, and the chance level.

    Parameters
    ----------
    recommended
        username -> recommended product ids.
    tastes
        username -> {"types": [...], "colours": [...], ...} (``tastes.json``'s "users").
    attributes
        product id -> its demo attributes ({"type", "colour", ...}).

    Returns
    -------
    (share, chance)
        Mean over shoppers of the fitting share of their list, and of the whole
        catalogue (what a random list would score).
    """
    shares, chances = [], []
    for username, ids in recommended.items():
        taste = tastes[username]
        if not ids:
            continue
        shares.append(sum(matches(taste, attributes[i]) for i in ids) / len(ids))
        chances.append(sum(matches(taste, a) for a in attributes.values()) / len(attributes))
    if not shares:
        return 0.0, 0.0
    return sum(shares) / len(shares), sum(chances) / len(chances)
