"""ResNet-20 (CIFAR-10): layout against the real akamaster checkpoint, and its real test accuracy."""

from __future__ import annotations

import shutil

import pytest
import torch

from dgn import data, weights
from dgn.nets.resnet_cifar import CIFAR10_CLASSES, ShortcutA, resnet20_cifar10
from tests.cifar import cifar_test_subset

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture
def checkpoint(fixtures_dir):
    return fixtures_dir / "torch" / "resnet_cifar10" / "resnet20-12fca82f.th"


def test_keys_and_shapes_match_released_checkpoint(checkpoint):
    raw = torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]
    released = {k.removeprefix("module."): v for k, v in raw.items()}
    own = resnet20_cifar10().state_dict()
    # the checkpoint predates num_batches_tracked; everything else must match one to one
    assert set(released) == {k for k in own if not k.endswith("num_batches_tracked")}
    for key, value in released.items():
        assert own[key].shape == value.shape, key
    assert sum(v.numel() for k, v in released.items() if "running" not in k) == sum(
        p.numel() for p in resnet20_cifar10().parameters()
    )


def test_layout_and_named_modules():
    model = resnet20_cifar10()
    modules = dict(model.named_modules())
    assert sum(p.numel() for p in model.parameters()) == 269_722  # the "0.27M" of He et al. / akamaster
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer1.2.relu2", "layer3.2.bn2", "linear", "avgpool"):
        assert name in modules, name
    assert isinstance(modules["layer2.0.shortcut"], ShortcutA)
    assert isinstance(modules["layer3.0.shortcut"], ShortcutA)
    assert isinstance(modules["layer2.1.shortcut"], torch.nn.Identity)
    assert not list(modules["layer2.0.shortcut"].parameters())
    assert modules["layer2.0.conv1"].stride == (2, 2) and modules["layer1.0.conv1"].stride == (1, 1)
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = ShortcutA(32 // 4)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_block_output_is_relu_of_residual_sum():
    block = resnet20_cifar10().layer2[0].eval()
    x = torch.randn(1, 16, 16, 16)
    expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + block.shortcut(x))
    assert torch.allclose(block(x), expected)


def test_real_weights_reach_published_accuracy_on_cifar10_test_jpegs(
    fixtures_dir, checkpoint, tmp_path, monkeypatch
):
    """The released checkpoint, loaded through the registry (download simulated from a local copy),
    classifies a fixed subset of the CIFAR-10 test JPEGs (lossy re-encodes; 91.78% on the originals)."""
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DGN_WEIGHTS_DIR", raising=False)
    hand_copied = tmp_path / "by-hand"
    hand_copied.mkdir()
    shutil.copy(checkpoint, hand_copied / checkpoint.name)
    stored = weights.download("resnet20-cifar10", weights_dir=hand_copied)
    assert stored == tmp_path / "cache" / "resnet20-cifar10.safetensors"
    state = weights.load_state_dict("resnet20-cifar10")
    model = resnet20_cifar10()
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    model.eval()

    dataset = data.ImageFolderDataset(cifar_test_subset(fixtures_dir, tmp_path / "cifar"))
    assert tuple(dataset.classes) == CIFAR10_CLASSES
    assert len(dataset) == 2_000
    images = data.load_images(dataset.paths)
    assert images.shape[1:] == (3, 32, 32)
    with torch.no_grad():
        predicted = model((images - MEAN) / STD).argmax(1)
    accuracy = (predicted == torch.tensor(dataset.labels)).float().mean().item()
    # Measured on this subset of 2,000: 0.805 (0.80 on all 10,000); a loader that swaps to BGR gives 0.70,
    # one that skips the normalisation 0.29.
    assert accuracy >= 0.77, accuracy
