"""MACO (Fel et al. 2023): a fixed natural magnitude, an optimised phase, crops with noise; and its preset."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dgn import regularisers as R
from dgn import spaces
from dgn.baseline import ImageAM, preset
from dgn.engine import AdamStep, StepInfo
from dgn.errors import DGNError
from dgn.fourier import decorrelate
from dgn.maco import CropsAndNoise, MacoImages, natural_magnitude, shipped_magnitude
from tests.tiny import tiny_pair

WORK = spaces.CAFFE_BGR_IMAGENET.with_size((36, 36))


def _magnitude_of(images: torch.Tensor) -> torch.Tensor:
    """The per-row |FFT| of the standardised decorrelated channels of RGB 0..1 images, as MACO fixes it."""
    x = torch.logit(images.clamp(1e-6, 1 - 1e-6))
    x = decorrelate(x)
    return torch.fft.rfft2((x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)).abs()


def test_a_step_changes_the_phase_and_never_the_magnitude():
    maco = MacoImages((36, 36), WORK)
    phase = maco.start([0, 1])
    before = _magnitude_of(maco.to_rgb01(phase))
    live = phase.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(maco.to_image(live)[:, 0, 10:20, 10:20].sum(), live)
    stepped = AdamStep(0.5)(phase, grad, StepInfo(0, grad.abs().flatten(1).mean(1), {}))
    after_images = maco.to_rgb01(stepped)
    assert not torch.allclose(after_images, maco.to_rgb01(phase), atol=1e-3)  # the image changed
    after = _magnitude_of(after_images)
    # Up to the standardisation's scale the magnitude is the template's, at every coefficient the real FFT
    # holds freely (columns 0 and W/2 must be Hermitian, so a free phase there is not kept exactly).
    inner = maco.magnitude[..., 1:-1]
    expected = inner / inner.norm()
    for spectrum in (before, after):
        got = spectrum[..., 1:-1] / spectrum[..., 1:-1].pow(2).sum((1, 2, 3), keepdim=True).sqrt()
        torch.testing.assert_close(got, expected.expand_as(got), atol=1e-4, rtol=1e-3)


def test_the_shipped_magnitude_falls_with_frequency_like_natural_images():
    magnitude = shipped_magnitude()
    assert magnitude.shape == (3, 32, 17)
    low, high = float(magnitude[:, 1:3, 1:3].mean()), float(magnitude[:, 12:16, 12:16].mean())
    assert low > 5 * high
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert natural_magnitude(images, (32, 32)).shape == (3, 32, 17)


def test_crops_take_the_asked_box_and_add_noise():
    canvas = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).expand(2, 3, 8, 8).contiguous()
    ctx = R.Context(0, [torch.Generator().manual_seed(i) for i in range(2)], torch.zeros(1, 3, 1, 1))
    whole = CropsAndNoise((8, 8), box=(1.0, 1.0), centre_sd=0.0, noise=0.0)(canvas, ctx)
    torch.testing.assert_close(whole, canvas, atol=1e-4, rtol=0)
    half = CropsAndNoise((4, 4), box=(0.5, 0.5), centre_sd=0.0, noise=0.0)(canvas, ctx)
    torch.testing.assert_close(half[0, 0], canvas[0, 0, 2:6, 2:6], atol=1e-4, rtol=0)  # the central half
    noisy = CropsAndNoise((8, 8), box=(1.0, 1.0), centre_sd=0.0, noise=2.0)(canvas, ctx)
    assert 1.0 < float((noisy - canvas).std()) < 3.0


def test_the_maco_preset_raises_its_targets_and_batches_like_one_by_one():
    am = ImageAM(tiny_pair()[1], replace(preset("maco"), steps=25), device="cpu")
    targets = ["fc8:1", "conv2:3@mean"]
    result = am.synthesize(targets, restarts=2, batch_size=4)
    assert (result.act_best > result.act_start).all()
    alone = torch.cat([am.synthesize([t], restarts=2, batch_size=1).codes_last for t in targets])
    torch.testing.assert_close(result.codes_last, alone, atol=1e-4, rtol=1e-4)


def test_a_maco_canvas_is_kept_whole_and_seen_at_the_input_size():
    am = ImageAM(tiny_pair()[1], replace(preset("maco"), steps=3, canvas=3, crop_box=(0.3, 0.4)), device="cpu")
    result = am.synthesize(["fc8:1", "conv2:3"])
    assert result.codes_last.shape == (2, 3, 108, 108)  # the whole canvas, in the classifier's space
    top, left, h, w = result.view_boxes[1]  # a spatial unit's receptive field, scaled to the canvas
    assert all(v % 3 == 0 for v in (top, left, h, w)) and top + h <= 108 and left + w <= 108
    rows = am.plan(["fc8:1", "conv2:3"])
    torch.testing.assert_close(am.activations(result.codes_last, rows), result.act_end, atol=1e-3, rtol=1e-3)
    with pytest.raises(DGNError, match="cannot start from given images"):
        am.optimise(rows, images=torch.zeros(2, 3, 36, 36))
    with pytest.raises(DGNError, match="crop_box"):
        replace(preset("maco"), crop_box=(0.5, 0.2))


def test_the_attribution_map_sums_the_image_gradient_over_the_steps():
    from dgn.layers import forward_to
    from dgn.objectives import UnitObjective

    am = ImageAM(tiny_pair()[1], replace(preset("simonyan"), steps=2), device="cpu")  # one gradient step
    rows = am.plan(["fc8:1", "conv2:3@2,2"])
    result = am.optimise(rows)
    image = am.initial_images(rows).requires_grad_(True)
    objective = UnitObjective([r.target for r in rows])
    (grad,) = torch.autograd.grad(objective(forward_to(am.classifier.module, am.to_classifier(image),
                                                       objective.layers)).sum(), image)
    torch.testing.assert_close(result.attribution, grad.abs().mean(1), atol=1e-6, rtol=1e-4)
    top, left, h, w = result.view_boxes[1]  # a spatial unit attributes nothing outside its receptive field
    outside = result.attribution[1].clone()
    outside[top : top + h, left : left + w] = 0
    assert float(outside.abs().max()) == 0 and float(result.attribution[1].max()) > 0


def test_maco_writes_its_transparency_picture_per_row(tmp_path):
    import numpy as np
    from PIL import Image

    from dgn.baseline import attribution_map, write_attribution

    am = ImageAM(tiny_pair()[1], replace(preset("maco"), steps=6, canvas=2), device="cpu")
    result = am.synthesize(["fc8:1", "fc8:2"], batch_size=2)
    assert result.attribution.shape == (2, 72, 72) and bool((result.attribution >= 0).all())
    centre = result.attribution[:, 18:54, 18:54].mean((1, 2))  # the crops centre on the canvas's middle
    assert bool((centre > 1.2 * result.attribution.mean((1, 2))).all() and (centre > 0).all())
    alone = am.synthesize(["fc8:2"], batch_size=1)
    torch.testing.assert_close(result.attribution[1:], alone.attribution, atol=1e-5, rtol=1e-4)
    written = write_attribution(tmp_path, result, am, "mean")
    assert written == [f"attribution/{r.slug}{s}.png" for r in result.rows for s in ("", "_rgba")]
    rgba = np.asarray(Image.open(tmp_path / written[1]))
    assert rgba.shape == (72, 72, 4)
    np.testing.assert_array_equal(rgba[..., 3], attribution_map(result.attribution[0]))
    opacity = attribution_map(torch.tensor([[0.0, 1.0], [2.0, 100.0]]), percentile=50)
    assert opacity.tolist() == [[0, 170], [255, 255]]  # clipped at the median (1.5), then scaled to 255
