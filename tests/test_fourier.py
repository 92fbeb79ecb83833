"""The Fourier image parameterisation (Olah et al. 2017) and the fourier preset built on it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dgn import regularisers as R
from dgn import spaces
from dgn.baseline import ImageAM, ImageAMSettings, preset
from dgn.errors import DGNError
from dgn.fourier import FourierImages, radial_frequencies
from tests.tiny import tiny_pair

WORK = spaces.CAFFE_BGR_IMAGENET.with_size((36, 36))


def test_an_image_maps_to_coefficients_and_back():
    images = torch.rand(2, 3, 36, 34, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    fourier = FourierImages((36, 34), WORK)
    torch.testing.assert_close(fourier.to_rgb01(fourier.coefficients(images)), images, atol=1e-5, rtol=0)
    plain = FourierImages((36, 34), WORK, decorrelate=False)
    torch.testing.assert_close(plain.to_rgb01(plain.coefficients(images)), images, atol=1e-5, rtol=0)
    work = fourier.to_image(fourier.coefficients(images))
    torch.testing.assert_close(spaces.to_rgb01(work, WORK), images, atol=1e-4, rtol=0)


def test_the_spectrum_is_scaled_by_one_over_frequency():
    fourier = FourierImages((32, 32), WORK)
    f = radial_frequencies(32, 32)
    assert float(f[0, 1]) == pytest.approx(1 / 32) and float(f[3, 4]) == pytest.approx(5 / 32)
    # 1 / f times sqrt(H W): twice the frequency, half the scale; the DC term gets one cycle per image's scale
    assert float(fourier.scale[0, 2]) == pytest.approx(float(fourier.scale[0, 1]) / 2)
    assert float(fourier.scale[0, 0]) == pytest.approx(float(fourier.scale[0, 1])) == pytest.approx(32 * 32)
    steeper = FourierImages((32, 32), WORK, decay_power=2.0)
    assert float(steeper.scale[0, 2]) == pytest.approx(float(steeper.scale[0, 1]) / 4)


def test_a_random_start_is_near_grey_and_seeded():
    fourier = FourierImages((36, 36), WORK)
    images = fourier.to_rgb01(fourier.start([0, 1]))
    assert abs(float(images.mean()) - 0.5) < 0.01 and 0 < float(images.std()) < 0.05
    torch.testing.assert_close(fourier.to_rgb01(fourier.start([1])), images[1:])
    assert not torch.equal(images[0], images[1])


def test_random_rotate_by_a_quarter_turn_is_rot90():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    ctx = R.Context(0, [torch.Generator().manual_seed(i) for i in range(2)], torch.zeros(1, 3, 1, 1))
    turned = R.RandomRotate((90.0, 90.0))(x, ctx)
    candidates = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert any(torch.allclose(turned, c, atol=1e-4) for c in candidates)
    unchanged = R.RandomRotate((0.0, 0.0))(x, ctx)
    torch.testing.assert_close(unchanged, x, atol=1e-4, rtol=0)


def _fourier_am(steps: int = 30, **kw) -> ImageAM:
    settings = replace(preset("fourier"), steps=steps, **kw)
    return ImageAM(tiny_pair()[1], settings, device="cpu")


def test_the_fourier_preset_raises_its_targets_and_batches_like_one_by_one():
    am = _fourier_am()
    targets = ["fc8:1", "conv2:3@mean", "fc6:4"]
    result = am.synthesize(targets, restarts=2, batch_size=6)
    assert (result.act_best > result.act_start).all()
    assert result.codes_last.shape == (6, 3, 36, 36)  # images, in the classifier's space
    alone = torch.cat([am.synthesize([t], restarts=2, batch_size=1).codes_last for t in targets])
    torch.testing.assert_close(result.codes_last, alone, atol=1e-4, rtol=1e-4)


def test_a_fourier_run_can_start_from_given_images():
    am = _fourier_am(steps=2)
    rows = am.plan(["fc8:1"])
    image = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    start = spaces.from_rgb01(image, am.classifier.space)
    result = am.optimise(rows, images=start)
    torch.testing.assert_close(result.act_start, am.activations(start, rows), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("change,message", [
    ({"regularisers": (R.L2Decay(0.01),)}, "input-stage regularisers only"),
    ({"octaves": 2}, "one octave"),
    ({"parameterisation": "wavelets"}, "unknown parameterisation"),
])
def test_fourier_settings_refuse_what_they_cannot_use(change, message):
    with pytest.raises(DGNError, match=message):
        replace(ImageAMSettings(step_rule="adam", parameterisation="fourier"), **change)


def test_accentuation_stays_closer_to_its_real_image_than_an_unregularised_run():
    """Feature accentuation (Hamblin et al. 2024) from a start image: with the anchor the image moves less,
    in pixels and in the anchored layer's features, than the same run without it, while the target rises."""
    from dgn.layers import forward_to

    _, clf = tiny_pair()
    image = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    start = spaces.from_rgb01(image, clf.space)
    distances = {}
    for weight in (0.0, 300.0):
        settings = replace(preset("accentuate"), steps=40, anchor_layer="conv1", anchor_weight=weight)
        am = ImageAM(clf, settings, device="cpu")
        result = am.synthesize(["fc8:2"], restarts=2, start=start)
        assert (result.act_best > result.act_start).all()
        out = spaces.to_rgb01(result.codes_last, clf.space)
        with torch.no_grad():
            f0, f1 = (forward_to(clf.module, x, ["conv1"])["conv1"] for x in (start, result.codes_last))
        distances[weight] = (float((out - image).pow(2).mean().sqrt()), float((f1 - f0).pow(2).mean().sqrt()))
    assert distances[300.0][0] < distances[0.0][0] and distances[300.0][1] < distances[0.0][1], distances
    with pytest.raises(DGNError, match="needs start images"):
        ImageAM(clf, preset("accentuate"), device="cpu").synthesize(["fc8:2"])
    with pytest.raises(DGNError, match="anchor_weight needs anchor_layer"):
        ImageAMSettings(anchor_weight=1.0)
