"""Layer activations: the channel grid, the figure, the top-k units, and ``dgn inspect activations``."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgn.cli import main
from dgn.errors import DGNError
from dgn.inspect.activations import activation_figure, channel_grid, layer_activations, load_input, top_units


def test_grid_layout_and_per_channel_normalisation():
    maps = torch.stack([
        torch.arange(6.0).view(2, 3),  # ramp 0..5
        torch.full((2, 3), 7.0),  # constant: shown black
        torch.tensor([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
    ])
    grid = channel_grid(maps, columns=2, pad=1)
    assert grid.shape == (1 + 2 * (2 + 1), 1 + 2 * (3 + 1))
    first = grid[1:3, 1:4]
    np.testing.assert_array_equal(first, (np.arange(6).reshape(2, 3) / 5 * 255 + 0.5).astype(np.uint8))
    assert (grid[1:3, 5:8] == 0).all()  # the constant channel, top right
    third = grid[4:6, 1:4]  # second row, first column: min -1 -> 0, max 1 -> 255, 0 -> mid-grey
    assert third[0, 0] == 0 and third[0, 1] == 255 and third[1, 0] == 128
    assert (grid[0] == 255).all() and (grid[4:6, 5:8] == 255).all()  # padding and the empty fourth cell


def test_global_normalisation_and_zoom():
    maps = torch.stack([torch.zeros(2, 2), torch.full((2, 2), 10.0)])
    grid = channel_grid(maps, columns=2, zoom=3, pad=0, normalise="global")
    assert grid.shape == (6, 12)
    assert (grid[:, :6] == 0).all() and (grid[:, 6:] == 255).all()
    with pytest.raises(DGNError, match="valid: channel, global"):
        channel_grid(maps, normalise="rank")


def test_top_units_by_mean_and_by_max():
    acts = torch.zeros(2, 4, 1, 2)
    acts[0, 1] = torch.tensor([[9.0, -9.0]])  # max 9, mean 0
    acts[:, 2] = 2.0  # mean 2, max 2
    acts[1, 3] = torch.tensor([[3.0, 3.0]])  # mean 1.5, max 3
    assert top_units(acts, 2, "mean") == [(2, 2.0), (3, 1.5)]
    assert top_units(acts, 3, "max") == [(1, 9.0), (3, 3.0), (2, 2.0)]
    # fc-shaped input (first position only): unit 1 has mean (9 + 0) / 2; k is capped at the 4 units
    assert top_units(acts[:, :, 0, 0], 10) == [(1, 4.5), (2, 2.0), (3, 1.5), (0, 0.0)]
    with pytest.raises(DGNError, match="valid: mean, max"):
        top_units(acts, 2, "median")


def test_layer_activations_are_pre_relu_unless_rectified(one_thread):
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(1, 2, 1))
    net.add_module("relu", nn.ReLU(inplace=True))
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        net.conv.bias.zero_()
    x = torch.tensor([[[[1.0, -2.0]]]])
    np.testing.assert_array_equal(layer_activations(net, x, "conv")[0, :, 0].numpy(), [[1.0, -2.0], [-1.0, 2.0]])
    np.testing.assert_array_equal(layer_activations(net, x, "conv", rectify=True)[0, :, 0].numpy(),
                                  [[1.0, 0.0], [0.0, 2.0]])


def test_figure_has_three_panels_and_checks_the_channel():
    image = np.zeros((32, 32, 3), np.uint8)
    maps = torch.randn(8, 16, 16)
    figure = activation_figure(image, maps, channel=3, height=64)
    assert figure.shape[0] > 64 and figure.shape[1] > 3 * 64
    with pytest.raises(DGNError, match="valid channels are 0..7"):
        activation_figure(image, maps, channel=8)


def test_load_input_is_in_the_classifier_space(tmp_path):
    from dgn.models import load_classifier

    classifier = load_classifier("cifar-caffenet", random_weights=True)
    path = tmp_path / "red.png"
    Image.fromarray(np.tile(np.array([255, 0, 0], np.uint8), (40, 50, 1))).save(path)
    x = load_input([path], classifier)
    assert x.shape == (1, 3, 32, 32)
    # BGR minus the mean (104, 117, 123) on the 0..255 scale: red is the last channel
    np.testing.assert_allclose(x[0, :, 5, 5].numpy(), [-104.0, -117.0, 255.0 - 123.0], atol=1e-3)
    with pytest.raises(DGNError, match="not found"):
        load_input([tmp_path / "missing.png"], classifier)


def cifar_jpegs(fixtures_dir: Path, dest: Path, class_name: str = "cat", count: int = 2) -> list[Path]:
    """The first ``count`` CIFAR-10 test JPEGs of one class, read from the fixture archive into ``dest``."""
    archive = fixtures_dir / "data" / "cifar10_test_jpg" / "cifar10_test_jpg_full.tar.gz"
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and member.name.endswith(".jpg") and parts[-2] == class_name:
                path = dest / f"{class_name}_{parts[-1]}"
                path.write_bytes(tar.extractfile(member).read())
                written.append(path)
                if len(written) == count:
                    break
    return sorted(written)


def test_cli_on_the_cifar_world(fixtures_dir, tmp_path, capsys):
    images = cifar_jpegs(fixtures_dir, tmp_path / "cifar")
    out = tmp_path / "out"
    assert main(["inspect", "activations", "--image", *map(str, images), "--layer", "conv2", "--top-k", "4",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "top 4 units of conv2" in text and text.count("conv2:") == 4
    for name in ("activations_000.png", "activations_001.png", "top_units.png"):
        assert Image.open(out / name).size[0] > 100
    assert main(["inspect", "activations", "--image", str(images[0]), "--layer", "fc8", "--out", str(out / "fc")]) == 0
    assert (out / "fc" / "top_units.png").is_file()
    assert main(["inspect", "activations", "--image", str(images[0]), "--layer", "conv2", "--channel", "64",
                 "--out", str(out)]) == 2
    assert "valid channels are 0..63" in capsys.readouterr().err

