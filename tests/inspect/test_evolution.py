"""Feature evolution across checkpoints: the checkpoint format, the strips, and ``dgn inspect evolution``."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dgn.cli import main
from dgn.errors import DGNError
from dgn.inspect.evolution import evolution_picture, feature_evolution, read_checkpoints, save_checkpoint
from dgn.models import load_classifier, load_generator
from dgn.synthesis import ActMaxSettings


def _run(folder, accuracies=(0.1, 0.35, 0.6), seeds=(0, 1, 2)):
    """Tiny training run: cifar-caffenet checkpoints with seeded random weights, written out of order."""
    for epoch in reversed(range(len(accuracies))):
        state = load_classifier("cifar-caffenet", random_weights=True, seed=seeds[epoch]).module.state_dict()
        save_checkpoint(folder / f"e{epoch}.safetensors", state, "cifar-caffenet", epoch, accuracies[epoch], 2000)
    return folder


def test_checkpoints_are_read_in_epoch_order_with_their_accuracy(tmp_path):
    found = read_checkpoints(_run(tmp_path))
    assert [c.epoch for c in found] == [0, 1, 2]
    assert [c.val_accuracy for c in found] == [0.1, 0.35, 0.6]
    assert found[2].label == "ep2 60.0%"
    save_file({"w": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(DGNError, match="lacks metadata"):
        read_checkpoints(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DGNError, match="no \\*.safetensors"):
        read_checkpoints(tmp_path / "empty")


def test_one_strip_per_target_and_same_seed_same_image(tmp_path, one_thread):
    # epochs 1 and 2 hold the same weights: with the same seeds their images must be identical
    checkpoints = read_checkpoints(_run(tmp_path, (0.1, 0.4, 0.4), seeds=(0, 5, 5)))
    generator = load_generator("cifar-deepsim-fc6")
    result = feature_evolution(generator, checkpoints, ["fc8:1", "fc8:7"], ActMaxSettings(steps=4), seed=3,
                               device="cpu")
    assert len(result.images) == 2 and all(len(strip) == 3 for strip in result.images)
    assert result.activations.shape == (2, 3)
    for strip in result.images:
        assert torch.equal(strip[1], strip[2]) and not torch.equal(strip[0], strip[1])
    picture = evolution_picture(result, generator.space, tile=40)
    assert picture.shape[0] == 2 * (40 + 14 + 4) + 4  # two strips of captioned tiles
    assert picture.shape[1] == 70 + 3 * (40 + 4) + 4  # target names, then three checkpoints


def test_cli_writes_the_strips_with_the_metadata_accuracies(tmp_path, capsys, one_thread):
    folder = _run(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["inspect", "evolution", "--checkpoints", str(folder), "--target", "fc8:0-1", "--steps", "3",
                 "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads((out / "evolution.json").read_text())
    assert report["targets"] == ["fc8:0", "fc8:1"]
    assert [c["val_accuracy"] for c in report["checkpoints"]] == [0.1, 0.35, 0.6]
    assert len(report["act_end"]) == 2 and len(report["act_end"][0]) == 3
    assert Image.open(out / "evolution.png").format == "PNG"
    assert main(["inspect", "evolution", "--checkpoints", str(tmp_path / "none"), "--target", "fc8:0",
                 "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
