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


def test_brg_moves_channels_and_back_undoes_it(ps):
    x = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    swapped = ps.brg(x)
    assert swapped[0, :, 0, 0].tolist() == pytest.approx([0.3, 0.1, 0.2])  # R <- B, G <- R, B <- G
    assert torch.equal(swapped[:, ps.BACK], x)


def test_cut_up_permutes_whole_quarters(ps):
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


def test_grey255_weights(ps):
    x = torch.zeros(1, 3, 2, 2)
    x[:, 1] = 1.0  # pure green
    assert ps.grey255(x).shape == (1, 2, 2)
    assert float(ps.grey255(x)[0, 0, 0]) == pytest.approx(0.587 * 255)


def test_high_frequency_share_of_pure_frequencies(ps):
    i = torch.arange(16.0)
    checker = ((i.view(-1, 1) + i.view(1, -1)) % 2).expand(1, 3, 16, 16)  # 0.5 cycles/px both ways
    slow = (0.5 + 0.5 * torch.cos(2 * torch.pi * i / 8)).view(1, 1, 1, 16).expand(1, 3, 16, 16)  # 0.125
    shares = ps.high_frequency_share(torch.cat([checker, slow, torch.full((1, 3, 16, 16), 0.3)]))
    assert shares.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-5)


def test_high_frequency_share_rises_with_noise_and_falls_with_blur(ps):
    x = smooth(8)
    g = torch.Generator().manual_seed(1)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    base, more, less = (ps.high_frequency_share(t) for t in (x, noisy, ps.blur(noisy)))
    assert (more > base + 0.05).all()  # white noise puts most of its power above 0.25 cycles/px
    assert (less < 0.5 * more).all()  # sigma 1 px keeps about exp(-2 pi^2 0.25^2) ~ 0.3 of the power at 0.25


def test_seam_correlation_drops_when_cut_up(ps):
    x = smooth(64)
    seam, inside = ps.seam_correlation(x)
    assert seam > 0.95 and inside > 0.95
    cut_seam, cut_inside = ps.seam_correlation(ps.cut_up(x))
    assert cut_inside == pytest.approx(inside, abs=1e-6)  # the insides of the quarters are untouched
    assert cut_seam < 0.7


def test_quarter_correlation_cannot_see_a_shuffle_but_seams_can(ps):
    g = torch.Generator().manual_seed(3)
    x = 0.4 * smooth(64) + 0.6 * torch.rand(64, 3, 1, 1, generator=g)  # each image with a colour of its own
    measures, cut = ps.image_measures(x), ps.image_measures(ps.cut_up(x))
    assert set(ps.NEW_MEASURES) <= set(measures)
    assert measures["quarter_correlation"] > 0.9  # neighbouring quarters share the image's colour ...
    # ... shuffled or not
    assert cut["quarter_correlation"] == pytest.approx(measures["quarter_correlation"], abs=0.02)
    assert cut["seam_correlation"] < measures["seam_correlation"] - 0.1  # the seams see the shuffle
    assert cut["seam_correlation"] < cut["inside_correlation"] - 0.1
    assert cut["inside_correlation"] == pytest.approx(measures["inside_correlation"], abs=1e-6)


def test_line_correlation_of_identical_and_independent_lines(ps):
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    x[..., 4, :] = x[..., 3, :]
    x[..., :, 4] = x[..., :, 3]
    assert ps.line_correlation(x, [(3, 4)]) == pytest.approx(1.0, abs=1e-6)
    assert abs(ps.line_correlation(x, [(0, 7)])) < 0.2  # independent noise


def test_class_channel_means(ps):
    x = torch.zeros(4, 3, 2, 2)
    x[0, 0], x[1, 0] = 1.0, 0.5  # class 0: red 1 and 0.5
    x[2, 2] = 1.0  # class 1: blue; class 1's other image black
    means = ps.class_channel_means(x, torch.tensor([0, 0, 1, 1]), classes=2)
    assert torch.allclose(means, torch.tensor([[0.75, 0.0, 0.0], [0.0, 0.0, 0.5]]))


def test_chroma_correlation(ps):
    means = torch.tensor([[0.6, 0.3, 0.2], [0.2, 0.5, 0.4], [0.3, 0.3, 0.7]])
    assert ps.chroma_correlation(means, means.clone()) == pytest.approx(1.0)  # identical colour statistics
    assert ps.chroma_correlation(means, means + 0.1) == pytest.approx(1.0)  # grey level removed
    assert ps.chroma_correlation(means, 1 - means) == pytest.approx(-1.0)
    assert ps.chroma_correlation(means, means[:, ps.BRG]) < 0.5


def test_reinitialise_default_and_own_init(ps):
    torch.manual_seed(5)
    net = ps.cifar_caffenet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ps.reinitialise(net, "fc8")
    after = net.state_dict()
    assert not torch.equal(after["fc8.weight"], before["fc8.weight"])
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith("fc8."))
    assert after["fc8.bias"].abs().sum() > 0  # PyTorch's default: a uniform bias; the net's own: zero

    torch.manual_seed(0)
    own = ps.cifar_caffenet()
    ps.reinitialise(net, "fc7", own)
    ps.reinitialise(net, "fc8", own)
    after = net.state_dict()
    assert torch.equal(after["fc7.weight"], own.fc7.weight)
    assert torch.equal(after["fc8.weight"], own.fc8.weight)
    assert torch.equal(after["fc6.weight"], before["fc6.weight"])
    assert after["fc8.bias"].abs().sum() == 0
    he = (2 / own.fc8.in_features) ** 0.5
    assert float(after["fc8.weight"].std()) == pytest.approx(0.1 * he, rel=0.1)  # the net's small fc8


def test_print_measures_prints_every_net_and_reference(ps, capsys):
    net = {"held_out_accuracy": 0.5, "judge": 0.55, "laplacian_variance": 6421.0, "hf_share": 0.1,
           "quarter_correlation": 0.8, "seam_correlation": 0.9, "inside_correlation": 0.95,
           "chroma_vs_normal": 0.7, "chroma_vs_brg": -0.2}
    training = {f"{k}_{name}": 0.5 for k in ps.NEW_MEASURES for name in ("normal", "blur", "cut_up", "brg")}
    training.update(chroma_brg_vs_normal=-0.4, chroma_blur_vs_normal=1.0)
    ps.print_measures({"nets": {"normal": net, "cut-up": {**net, "seam_correlation": 0.36}},
                       "training_images": training})
    out = capsys.readouterr().out
    assert "| seam r |" in out and "| hf share |" in out and "| chroma r vs normal |" in out
    assert "| normal | 0.500 | 0.550 | 6421 | 0.1000 | 0.800 | 0.900 | 0.950 | 0.700 | -0.200 |" in out
    assert "| cut-up |" in out and "| 0.360 |" in out
    assert "training images, cut_up" in out and "brg -0.400" in out
