"""Occlusion sensitivity on a net whose answer is known, the correspondence measure, ``dgn inspect occlusion``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgn import spaces
from dgn.cli import main
from dgn.errors import DGNError
from dgn.inspect.occlusion import Occlusion, correspondence, grey_value, occluder_positions, random_positions
from tests.inspect.test_activations import cifar_jpegs

SIDE, PATCH_TOP, PATCH_LEFT, PATCH = 12, 4, 6, 3  # the class-0 score reads a 3x3 patch at (4, 6)


def patch_net() -> nn.Sequential:
    """feat: the channel sum (1x1 conv); class 0 score = 0.05 * (sum of the patch), class 1 score = 1."""
    net = nn.Sequential()
    net.add_module("feat", nn.Conv2d(3, 1, 1))
    net.add_module("relu", nn.ReLU(inplace=True))
    net.add_module("flatten", nn.Flatten(1))
    net.add_module("fc", nn.Linear(SIDE * SIDE, 2))
    mask = torch.zeros(SIDE, SIDE)
    mask[PATCH_TOP : PATCH_TOP + PATCH, PATCH_LEFT : PATCH_LEFT + PATCH] = 0.05
    with torch.no_grad():
        net.feat.weight.fill_(1.0)
        net.feat.bias.zero_()
        net.fc.weight.zero_()
        net.fc.weight[0] = mask.flatten()
        net.fc.bias.copy_(torch.tensor([0.0, 1.0]))
    return net.eval()


def image() -> torch.Tensor:
    """Ones on the left half, twos on the right half (three channels)."""
    x = torch.ones(3, SIDE, SIDE)
    x[:, :, SIDE // 2 :] = 2.0
    return x


def test_maps_on_a_net_whose_answer_is_known(one_thread):
    size, stride = 4, 2
    maps = Occlusion(patch_net(), spaces.CAFFE_BGR_IMAGENET, size, stride).attribute(image(), feature="feat:0")
    assert maps.ys == maps.xs == [0, 2, 4, 6, 8]
    x = image()
    clean_patch = float(x[:, PATCH_TOP : PATCH_TOP + PATCH, PATCH_LEFT : PATCH_LEFT + PATCH].sum())
    assert maps.clean_label == 0 and maps.target == 0
    assert maps.clean_probability == pytest.approx(1 / (1 + math.exp(1 - 0.05 * clean_patch)))
    for r, y in enumerate(maps.ys):
        for c, x0 in enumerate(maps.xs):
            hidden = x.clone()
            hidden[:, y : y + size, x0 : x0 + size] = 0.0  # the Caffe space's grey is 0
            score = 0.05 * float(hidden[:, PATCH_TOP : PATCH_TOP + PATCH, PATCH_LEFT : PATCH_LEFT + PATCH].sum())
            probability = 1 / (1 + math.exp(1.0 - score))
            assert float(maps.probability[r, c]) == pytest.approx(probability, abs=1e-5)
            assert int(maps.label[r, c]) == (0 if score > 1.0 else 1)
            assert float(maps.feature[r, c]) == pytest.approx(float(hidden.sum()), abs=1e-3)
    # low exactly where the square covers the patch: positions with no overlap keep the clean value
    overlaps = torch.tensor([[max(0, min(y + size, PATCH_TOP + PATCH) - max(y, PATCH_TOP))
                              * max(0, min(x0 + size, PATCH_LEFT + PATCH) - max(x0, PATCH_LEFT))
                              for x0 in maps.xs] for y in maps.ys])
    assert torch.allclose(maps.probability[overlaps == 0], torch.tensor(maps.clean_probability))
    assert (maps.probability[overlaps > 0] < maps.clean_probability - 1e-3).all()


def test_batching_does_not_change_the_maps_and_feature_defaults_to_strongest(one_thread):
    one = Occlusion(patch_net(), None, 3, 1, batch_size=1).attribute(image(), feature="feat")
    many = Occlusion(patch_net(), None, 3, 1, batch_size=50).attribute(image()[None], target=1, feature="feat")
    assert one.feature_name == "feat:0" and torch.equal(one.feature, many.feature)
    assert torch.allclose(one.probability, 1 - many.probability, atol=1e-6)
    assert torch.equal(one.label, many.label) and one.probability.shape == (10, 10)


def test_grey_is_the_pixel_space_mean():
    assert grey_value(spaces.CAFFE_BGR_IMAGENET).tolist() == [0.0, 0.0, 0.0]
    assert grey_value(spaces.TORCHVISION_IMAGENET).tolist() == [0.0, 0.0, 0.0]
    assert grey_value(spaces.RGB01).tolist() == [0.5, 0.5, 0.5]


def test_bad_settings_are_refused():
    with pytest.raises(DGNError, match="larger than the 12x12 image"):
        occluder_positions(12, 12, 13, 1)
    method = Occlusion(patch_net(), None, 4, 2)
    with pytest.raises(DGNError, match="valid classes are 0..1"):
        method.attribute(image(), target=2)
    with pytest.raises(DGNError, match="valid channels are 0..0"):
        method.attribute(image(), feature="feat:3")
    with pytest.raises(DGNError, match="needs \\(C, H, W\\)"):
        method.attribute(image(), feature="fc")
    with pytest.raises(DGNError, match="unknown layer"):
        method.attribute(image(), feature="conv5")


def test_correspondence_by_hand():
    net = nn.Sequential()
    net.add_module("feat", nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        net.feat.weight.fill_(1.0)
        net.feat.bias.zero_()
    images = torch.ones(3, 1, 8, 8)
    # the same part everywhere: every image's features change in the same places -> distance 0
    assert correspondence(net, images, [(2, 2)] * 3, 2, "feat") == (0.0, 0.0)
    # two squares at (0,0), one at (4,4): the pairs differ in 0, 8 and 8 of 64 feature signs
    mean, std = correspondence(net, images, [(0, 0), (0, 0), (4, 4)], 2, "feat")
    assert mean == pytest.approx((0 + 8 / 64 + 8 / 64) / 3)
    assert std == pytest.approx(float(torch.tensor([0, 8 / 64, 8 / 64]).std()))
    with pytest.raises(DGNError, match="one per image"):
        correspondence(net, images, [(0, 0)], 2, "feat")
    assert random_positions(4, 8, 8, 3, seed=1) == random_positions(4, 8, 8, 3, seed=1)
    assert all(0 <= y <= 5 and 0 <= x <= 5 for y, x in random_positions(50, 8, 8, 3))


def test_cli_on_the_cifar_world(fixtures_dir, tmp_path, capsys):
    images = cifar_jpegs(fixtures_dir, tmp_path / "dogs", "dog", count=3)
    out = tmp_path / "out"
    assert main(["inspect", "occlusion", "--image", *map(str, images), "--size", "12", "--stride", "10",
                 "--part", "10,10", "--layers", "conv5", "--random-trials", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 image pairs" in text and "conv5: part" in text and "random" in text
    for name in ("occlusion_000.png", "occlusion_002.png", "correspondence.png"):
        assert Image.open(out / name).size[0] > 200
    single = tmp_path / "one.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(single)
    assert main(["inspect", "occlusion", "--image", str(single), "--size", "40", "--out", str(out)]) == 2
    assert "larger than the 32x32 image" in capsys.readouterr().err
    assert main(["inspect", "occlusion", "--image", str(single), "--part", "1,1", "--size", "16", "--stride", "16",
                 "--out", str(out)]) == 2
    assert "two or more --image" in capsys.readouterr().err
