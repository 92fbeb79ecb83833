"""First-layer filters as one tiled image: layout, BGR->RGB, normalisation, ``dgn inspect filters``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgn import spaces
from dgn.cli import main
from dgn.errors import DGNError
from dgn.inspect.filters import filter_tiles, first_conv, layer_filters


def test_layout_and_per_filter_normalisation():
    weight = torch.zeros(3, 3, 2, 2)
    weight[0, 0] = 1.0  # only the first stored channel is on
    weight[1] = torch.arange(12.0).view(3, 2, 2) * 10  # a ramp on a large scale
    # filter 2 stays constant: black
    grid = filter_tiles(weight, spaces.RGB01, "filter", columns=2, zoom=1, pad=1)
    assert grid.shape == (1 + 2 * 3, 1 + 2 * 3, 3)
    np.testing.assert_array_equal(grid[1:3, 1:3, 0], 255)  # filter 0, red channel (RGB space: not flipped)
    np.testing.assert_array_equal(grid[1:3, 1:3, 1:], 0)
    ramp = grid[1:3, 4:6]  # filter 1, top right: its own min 0 -> 0, its own max 110 -> 255
    assert ramp[0, 0, 0] == 0 and ramp[1, 1, 2] == 255
    assert (grid[4:6, 1:3] == 0).all()  # filter 2, second row
    assert (grid[4:6, 4:6] == 255).all() and (grid[0] == 255).all()  # empty cell and padding


def test_bgr_filters_are_shown_in_rgb_order():
    weight = torch.zeros(1, 3, 1, 1)
    weight[0, 0] = 1.0  # channel 0 of a BGR net is blue
    assert filter_tiles(weight, spaces.CAFFE_BGR_IMAGENET, pad=0)[0, 0].tolist() == [0, 0, 255]
    assert filter_tiles(weight, spaces.RGB01, pad=0)[0, 0].tolist() == [255, 0, 0]


def test_global_normalisation_keeps_relative_strength_and_zoom():
    weight = torch.stack([torch.full((1, 1, 1), 1.0), torch.full((1, 1, 1), 3.0), torch.full((1, 1, 1), 5.0)])
    grid = filter_tiles(weight, None, "global", columns=3, zoom=2, pad=0)
    assert grid.shape == (2, 6, 3)
    assert grid[0, ::2, 0].tolist() == [0, 128, 255]  # grey filters: all three channels equal
    assert (grid[..., 0] == grid[..., 2]).all()
    per_filter = filter_tiles(weight, None, "filter", columns=3, pad=0)
    assert (per_filter == 0).all()  # each constant filter on its own scale is black


def test_bad_layers_are_refused():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    assert first_conv(net) == "0"
    with pytest.raises(DGNError, match="first layer"):
        filter_tiles(layer_filters(net, "2")[1])
    with pytest.raises(DGNError, match="no convolution weight"):
        layer_filters(net, "1")
    with pytest.raises(DGNError, match="no nn.Conv2d"):
        first_conv(nn.Sequential(nn.Linear(2, 2)))


def test_cli_tiles_the_cifar_world_conv1(tmp_path, capsys):
    from dgn.models import load_classifier

    out = tmp_path / "f"
    assert main(["inspect", "filters", "--out", str(out), "--zoom", "4", "--normalise", "global"]) == 0
    text = capsys.readouterr().out
    assert "conv1: 32 filters 3x3 (BGR weights shown as RGB" in text and "filters.png" in text
    image = np.asarray(Image.open(out / "filters.png"))
    assert image.shape == (1 + 6 * 13, 1 + 6 * 13, 3)  # 32 filters in a 6x6 grid of 12-pixel tiles
    weight = load_classifier("cifar-caffenet").module.conv1.weight
    expected = filter_tiles(weight, spaces.CAFFE_BGR_IMAGENET, "global", zoom=4)
    np.testing.assert_array_equal(image, expected)
    assert main(["inspect", "filters", "--layer", "fc6", "--out", str(out)]) == 2
    assert "no convolution weight" in capsys.readouterr().err
