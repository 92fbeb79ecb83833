"""The dataset-centric mixture: the group's top units, their summed objective, and ``dgn inspect mixture``."""

from __future__ import annotations

import json

import torch
from PIL import Image

from dgn import spaces
from dgn.baseline import ImageAMSettings
from dgn.cli import main
from dgn.inspect.mixture import (
    SumOfUnits,
    image_sums,
    synthesise_dgnam,
    synthesise_image_am,
    top_units,
    unit_means,
)
from dgn.layers import forward_to
from dgn.synthesis import ActMaxSettings
from tests.inspect.test_embedding import cifar_sample
from tests.tiny import tiny_pair


def test_objective_is_the_hand_summed_units(one_thread):
    _, classifier = tiny_pair()
    x = torch.randn(3, 3, 36, 36) * 50
    acts = forward_to(classifier.module, x, ["fc6", "conv2"])
    assert torch.allclose(SumOfUnits("fc6", (4, 0, 9))(acts), acts["fc6"][:, [4, 0, 9]].sum(1))
    conv = SumOfUnits("conv2", (1, 5), post_relu=True)(acts)
    by_hand = acts["conv2"][:, 1].relu().mean((1, 2)) + acts["conv2"][:, 5].relu().mean((1, 2))
    assert torch.allclose(conv, by_hand, atol=1e-5)


def test_top_units_are_the_highest_group_means(one_thread):
    _, classifier = tiny_pair()
    group = torch.rand(5, 3, 36, 36)
    means = unit_means(classifier, group, "fc6")
    units = top_units(classifier, group, "fc6", k=4)
    assert units.units == torch.argsort(means, descending=True)[:4].tolist()
    assert units.means == sorted(units.means, reverse=True) and abs(units.group_sum - means.sort()[0][-4:].sum()) < 1e-4


def test_both_syntheses_raise_the_sum_above_the_group(one_thread):
    generator, classifier = tiny_pair()
    units = top_units(classifier, torch.rand(5, 3, 36, 36), "fc6", k=3)
    dgn = synthesise_dgnam(generator, classifier, units, ActMaxSettings(steps=20), seed=0, upper_bound=3.0,
                           device="cpu")
    image = synthesise_image_am(classifier, units, ImageAMSettings(steps=20), seed=0, device="cpu")
    for mixture in (dgn, image):
        assert mixture.sum_end > mixture.sum_start
        assert abs(sum(mixture.per_unit) - mixture.sum_end) < 1e-3 * max(1.0, abs(mixture.sum_end))
    assert image.sum_end > units.group_sum
    group = torch.rand(4, 3, 36, 36)
    acts = forward_to(classifier.module, spaces.convert(group, spaces.RGB01, classifier.space), ["fc6"])
    assert torch.allclose(image_sums(classifier, group, units), acts["fc6"][:, units.units].sum(1), atol=1e-4)


def test_cli_mixes_a_cifar_class(tmp_path, fixtures_dir, capsys, one_thread):
    images = cifar_sample(fixtures_dir, tmp_path / "cifar", per_class=3) / "cat"
    out = tmp_path / "out"
    # the default 200 steps: act_max from lr 8 wanders for most of a short schedule (see dgn.demo.QUICK_LR), so
    # 20 steps could end below the start on some CPUs
    assert main(["inspect", "mixture", "--images", str(images), "--k", "3",
                 "--baseline-steps", "8", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads((out / "mixture.json").read_text())
    assert report["images"] == 3 and len(report["units"]) == 3
    assert report["group_best_image_sum"] >= report["group_mean_sum"]
    assert [m["method"].split(" ")[0] for m in report["mixtures"]] == ["dgn-am", "image-am"]
    assert all(m["sum_end"] > m["sum_start"] for m in report["mixtures"])
    assert Image.open(out / "mixture.png").format == "PNG"
    assert main(["inspect", "mixture", "--images", str(images), "--k", "0", "--out", str(out)]) == 2
    assert "k must be" in capsys.readouterr().err
