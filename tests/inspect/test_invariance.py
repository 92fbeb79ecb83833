"""Feature invariance to shifts, scaling and rotation, and ``dgn inspect invariance``."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dgn import spaces
from dgn.cli import main
from dgn.inspect.invariance import InvarianceAnalysis, transform
from tests.inspect.test_embedding import cifar_sample
from tests.tiny import tiny_pair


def _smooth_images(n: int = 6, size: int = 36) -> torch.Tensor:
    torch.manual_seed(0)
    coarse = torch.rand(n, 3, 6, 6)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def test_transforms_move_pixels_as_named():
    x = torch.rand(2, 3, 8, 8)
    down = transform(x, "translate", 2)
    assert torch.allclose(down[:, :, 2:], x[:, :, :-2], atol=1e-6) and torch.all(down[:, :, :2] == 0)
    turned = transform(x, "rotate", 90)
    assert torch.allclose(turned, torch.rot90(x, 1, (2, 3)), atol=1e-5) or torch.allclose(
        turned, torch.rot90(x, -1, (2, 3)), atol=1e-5)
    assert transform(x, "scale", 1.0) is x and transform(x, "rotate", 0) is x


def test_identity_is_zero_and_distance_grows_with_the_shift(one_thread):
    _, classifier = tiny_pair()
    result = InvarianceAnalysis(classifier, ["conv1", "conv2", "fc6", "fc8"]).run(
        _smooth_images(), amounts={"translate": [0, 1, 3, 6], "rotate": [0, 20]})
    for layer in result.layers:
        shifts = result.normalised["translate"][layer]
        assert shifts[0] == 0 and np.all(np.diff(shifts) > 0), (layer, shifts)
        assert result.normalised["rotate"][layer][0] == 0 and result.normalised["rotate"][layer][1] > 0
        assert np.isclose(result.distance["translate"][layer][2] / result.feature_norm[layer], shifts[2])
    probs = result.probability["translate"]
    assert probs.shape == (6, 4) and np.all((probs > 0) & (probs < 1))
    # without labels the true class is the predicted one: its probability is the largest at the identity
    with torch.no_grad():
        x = spaces.convert(_smooth_images(), spaces.RGB01, classifier.space)
        top = torch.softmax(classifier.module(x), 1).max(1).values.numpy()
    assert np.allclose(probs[:, 0], top, atol=1e-6)


def test_cli_plots_every_layer_on_real_cifar_images(tmp_path, fixtures_dir, capsys, one_thread):
    images = cifar_sample(fixtures_dir, tmp_path / "cifar", per_class=1)
    out = tmp_path / "out"
    assert main(["inspect", "invariance", "--images", str(images), "--translate", "0,4", "--scale", "1,1.4",
                 "--rotate", "0,30", "--out", str(out)]) == 0
    summary = json.loads((out / "invariance.json").read_text())
    assert summary["layers"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert summary["true_class"] == list(range(10))  # the class folders give the true class
    assert summary["kinds"]["translate"]["normalised_distance"]["fc8"][0] == 0.0
    assert Image.open(out / "invariance.png").format == "PNG"
    assert main(["inspect", "invariance", "--images", str(images), "--rotate", "a,b", "--out", str(out)]) == 2
    assert "--rotate" in capsys.readouterr().err
