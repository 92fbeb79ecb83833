"""eval/prior_sanity.py's transforms and measures, on small hand-checked tensors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ps():
    """The eval script as a module."""
    spec = importlib.util.spec_from_file_location("prior_sanity", REPO / "eval" / "prior_sanity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prior_sanity"] = module
    spec.loader.exec_module(module)
    return module


def smooth(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB images: 4x4 noise upsampled bilinearly."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)


def test_brg_moves_channels_and_swaps_back(ps):
    x = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    swapped = ps.brg(x)
    assert swapped[0, :, 0, 0].tolist() == pytest.approx([0.3, 0.1, 0.2])  # R <- B, G <- R, B <- G
    assert torch.equal(ps.swap_back(swapped), x)


def test_blur_keeps_flat_images_and_spreads_a_point(ps):
    flat = torch.full((1, 3, 9, 9), 0.4)
    assert torch.allclose(ps.blur(flat), flat, atol=1e-6)
    point = torch.zeros(1, 3, 9, 9)
    point[..., 4, 4] = 1.0
    out = ps.blur(point)
    assert out.sum() == pytest.approx(3.0, abs=1e-4)  # mass kept (far from the edges)
    assert out[0, 0, 4, 4] < 0.2 and out[0, 0, 4, 5] > 0.05  # sigma 1: centre weight (1/2pi)/(sum) ~ 0.16


def test_cut_up_permutes_quarters(ps):
    x = torch.zeros(48, 1, 4, 4)
    for k, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        x[:, :, r : r + 2, c : c + 2] = k
    out = ps.cut_up(x)
    quarters = torch.stack([out[:, 0, :2, :2], out[:, 0, :2, 2:], out[:, 0, 2:, :2], out[:, 0, 2:, 2:]], 1)
    assert (quarters.amin((2, 3)) == quarters.amax((2, 3))).all()  # each quarter moved whole
    ids = quarters[:, :, 0, 0]
    assert (ids.sort(1).values == torch.arange(4.0)).all()  # a permutation of the four
    assert (ids != torch.arange(4.0)).any(1).sum() > 30  # most images change (23 of 24 orders do)
    assert torch.equal(out, ps.cut_up(x))  # seeded


def test_laplacian_variance_of_a_point(ps):
    assert float(ps.laplacian_variance(torch.full((1, 3, 5, 5), 0.7))) == pytest.approx(0.0, abs=1e-6)
    x = torch.zeros(1, 3, 5, 5)
    x[..., 2, 2] = 1 / 255  # grey value 1 (the grey weights sum to 1)
    # the valid 3x3 Laplacian: -4 at the centre, 1 at its 4 neighbours, 0 at the corners; mean 0, var 20/8
    assert float(ps.laplacian_variance(x)) == pytest.approx(2.5, rel=1e-4)


def test_high_frequency_share(ps):
    i = torch.arange(16.0)
    checker = ((i.view(-1, 1) + i.view(1, -1)) % 2).expand(1, 3, 16, 16)  # 0.5 cycles/px both ways
    slow = (0.5 + 0.5 * torch.cos(2 * torch.pi * i / 8)).view(1, 1, 1, 16).expand(1, 3, 16, 16)  # 0.125
    shares = ps.high_frequency_share(torch.cat([checker, slow, torch.full((1, 3, 16, 16), 0.3)]))
    assert shares.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-5)


def test_seam_correlation_drops_when_cut_up(ps):
    x = smooth(64)
    seam, inside = ps.seam_correlation(x)
    assert seam > 0.95 and inside > 0.95
    cut_seam, cut_inside = ps.seam_correlation(ps.cut_up(x))
    assert cut_inside == pytest.approx(inside, abs=1e-6)  # the insides of the quarters are untouched
    assert cut_seam < 0.7


def test_chroma_correlation(ps):
    means = torch.tensor([[0.6, 0.3, 0.2], [0.2, 0.5, 0.4], [0.3, 0.3, 0.7]])
    assert ps.chroma_correlation(means, means + 0.1) == pytest.approx(1.0)  # grey level removed
    assert ps.chroma_correlation(means, 1 - means) == pytest.approx(-1.0)
    assert ps.chroma_correlation(means, means[:, ps.BRG]) < 0.5


def test_subset_and_equal_steps(ps):
    y = torch.arange(10).repeat(100)
    keep = ps.subset(y, 0.1)
    assert torch.bincount(y[keep]).tolist() == [10] * 10
    assert torch.equal(keep, ps.subset(y, 0.1)) and not torch.equal(keep, ps.subset(y, 0.1, seed=1))
    assert [ps.epochs_for(n, 20) for n in (8000, 2000, 800)] == [20, 79, 180]  # 63, 16 and 7 batches an epoch


def test_cascade_reinitialises_only_the_named_layers(ps):
    torch.manual_seed(5)
    net = ps.cifar_caffenet()
    out = ps.cascade(net, ["fc8", "fc7"])
    same = {k: torch.equal(v, out.state_dict()[k]) for k, v in net.state_dict().items()}
    assert not same["fc8.weight"] and not same["fc7.weight"]
    assert same["fc6.weight"] and same["conv1.weight"]
