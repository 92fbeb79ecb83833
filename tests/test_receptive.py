"""Receptive fields by the backward-pass method, and ``dgn inspect receptive-field``."""

from __future__ import annotations

from torch import nn

from dgn.receptive import receptive_field


def test_two_stacked_3x3_convs_see_5x5():
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(1, 2, 3))
    model.add_module("conv2", nn.Conv2d(2, 2, 3, stride=2))
    # conv2 output (y=1, x=2) reads conv1 rows 2..4, cols 4..6, which read input rows 2..6, cols 4..8.
    assert receptive_field(model.eval(), "conv2", (1, 2), (1, 11, 11)) == (2, 4, 5, 5)


def test_field_grows_with_depth():
    from dgn.models import input_shape, load_classifier

    classifier = load_classifier("cifar-caffenet", random_weights=True)
    sizes = [receptive_field(classifier.module.eval(), layer, (0, 0), input_shape(classifier))[2]
             for layer in ("conv1", "conv2", "conv3")]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]


def test_a_whole_grid_at_once_equals_each_position_alone():
    from dgn.receptive import receptive_field, receptive_fields_grid
    from tests.tiny import tiny_classifier

    model = tiny_classifier().eval()
    for layer, grid in (("conv1", (16, 16)), ("conv2", (16, 16)), ("pool", (8, 8))):
        boxes = receptive_fields_grid(model, layer, grid, (3, 36, 36), chunk=5)
        assert len(boxes) == grid[0] * grid[1]
        for position in [(0, 0), (3, grid[1] - 5), (grid[0] - 1, 2), (grid[0] - 1, grid[1] - 1)]:
            assert boxes[position] == receptive_field(model, layer, position, (3, 36, 36)), (layer, position)
