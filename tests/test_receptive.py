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
