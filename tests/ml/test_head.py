"""The similarity head: stored bytes give the same projection; the fitted descriptor's vector layout."""

import numpy as np
import pytest

from recommendations.ml.backbones import Backbone
from recommendations.ml.colour import ColourSpec
from recommendations.ml.head import HeadSpec, NotEnoughLabels, SimilarityHead, fit_head, join

SMALL = HeadSpec(hidden=32, dimensions=8, epochs=5)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(40, 24)))
    return fit_head(x, np.arange(40) % 3, SMALL), x


def test_project_round_trips_through_bytes(fitted):
    head, x = fitted
    again = SimilarityHead.from_bytes(head.to_bytes())
    assert again.classes == head.classes == 3
    assert (again.inputs, again.dimensions) == (24, 8)
    np.testing.assert_array_equal(again.project(x), head.project(x))
    assert np.allclose(np.linalg.norm(again.project(x), axis=1), 1.0, atol=1e-6)


def test_one_category_is_not_enough_labels():
    x = _unit(np.random.default_rng(1).normal(size=(10, 24)))
    with pytest.raises(NotEnoughLabels, match="1 category has"):
        fit_head(x, ["a"] * 9 + [None], SMALL)


def _fitted_backbone(head_weight=0.5) -> Backbone:
    colour = ColourSpec(2, 2, 24)  # 8-d
    return Backbone(
        name="tiny_fitted",
        model=None,
        transform=None,
        dimensions=24 + colour.dimensions,
        weights_path=None,
        colour=colour,
        colour_weight=0.3,
        head_weight=head_weight,
    )


def test_fitted_layout_keeps_the_cnn_first_and_the_colour_last(fitted):
    head, x = fitted
    colour = _unit(np.abs(np.random.default_rng(2).normal(size=(len(x), 8))))
    headless = _fitted_backbone()
    with_head = headless.with_head(head, "ab" * 32, SMALL.describe())
    assert with_head.dimensions == 24 + 8 + 8 and with_head.cnn_dimensions == headless.cnn_dimensions == 24
    assert with_head.preprocessing["head"] == {**SMALL.describe(), "sha256": "ab" * 32, "weight": 0.5}
    before = headless.compose(x, colour)  # [cnn, colour] until a head is fitted
    after = with_head.compose(*headless.split(before))
    np.testing.assert_allclose(after, join(x, head.project(x), colour, 0.5, 0.3), atol=1e-6)
    for vectors in (before, after):  # the parts come back out of either version
        cnn, col = with_head.split(vectors)
        np.testing.assert_allclose(cnn, x, atol=1e-6)
        np.testing.assert_allclose(col, colour, atol=1e-6)


def test_only_a_fitted_descriptor_takes_a_head(fitted):
    head, _ = fitted
    with pytest.raises(ValueError, match="takes no similarity head"):
        _fitted_backbone(head_weight=0.0).with_head(head, "ab" * 32, {})
