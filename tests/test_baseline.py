import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dgn import regularisers as R
from dgn import spaces
from dgn.baseline import PRESETS, ImageAM, ImageAMSettings, preset
from dgn.errors import DGNError
from dgn.image_grad import image_gradient_only, strided_conv_input_grad
from dgn.layers import hooks_left
from dgn.models import Classifier
from dgn.outputs import RunWriter, read_manifest
from dgn.receptive import receptive_field
from tests.tiny import tiny_pair

TARGETS = ["fc8:0", "fc8:3", "fc6:7", "conv2:2", "conv1:4@3,5"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(settings: ImageAMSettings | None = None, **kw) -> ImageAM:
    return ImageAM(tiny_pair()[1], replace(settings or ImageAMSettings(), **kw), device="cpu")


def context(batch: int, step: int = 0, seed: int = 0) -> R.Context:
    rngs = [torch.Generator().manual_seed(seed + i) for i in range(batch)]
    return R.Context(step, rngs, torch.zeros(1, 3, 1, 1))


# ----- regularisers on hand-made inputs -------------------------------------------------------------
def test_gaussian_kernels_sum_to_one_and_follow_scipy_and_opencv():
    assert R.scipy_size(0.5) == 5 and R.scipy_size(1.0) == 9  # radius int(4 sigma + 0.5)
    for sigma in (0.5, 1.0, 2.3):
        k = R.gaussian_kernel1d(sigma, R.scipy_size(sigma))
        assert k.sum().item() == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(k, k.flip(0)) and k.argmax() == len(k) // 2
    # OpenCV's fixed kernels for sigma <= 0, and sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8 beyond size 7.
    assert R.gaussian_kernel1d(0, 3).tolist() == [0.25, 0.5, 0.25]
    torch.testing.assert_close(R.gaussian_kernel1d(0, 9), R.gaussian_kernel1d(1.7, 9))
    padded = R.gaussian_kernel1d(1.0, 3, support=7)
    assert padded[:2].eq(0).all() and padded[-2:].eq(0).all() and padded.sum().item() == pytest.approx(1.0)
    with pytest.raises(DGNError, match="odd"):
        R.gaussian_kernel1d(1.0, 4)


def test_blur_keeps_constants_spreads_a_delta_into_the_kernel_and_keeps_rows_apart():
    k = torch.stack([R.gaussian_kernel1d(0.8, 5), R.gaussian_kernel1d(0, 5)])
    flat = torch.full((2, 3, 9, 9), 7.0)
    torch.testing.assert_close(R.blur_rows(flat, k, k), flat)
    delta = torch.zeros(2, 3, 9, 9)
    delta[:, :, 4, 4] = 1.0
    out = R.blur_rows(delta, k, k)
    for row in range(2):
        expected = torch.outer(k[row], k[row]).float()
        torch.testing.assert_close(out[row, 1, 2:7, 2:7], expected)
        assert out[row].sum().item() == pytest.approx(3.0, abs=1e-5)
    alone = R.blur_rows(delta[1:], k[1:], k[1:])
    torch.testing.assert_close(out[1:], alone)


def test_gaussian_blur_runs_every_k_steps_and_repeats():
    blur = R.GaussianBlur(sigma=(0.0, 0.0), sizes=(3,), repeats=(2, 2), every=4)
    x = torch.randn(2, 3, 8, 8)
    assert blur(x, context(2, step=1)) is x
    k = torch.tensor([[0.25, 0.5, 0.25]] * 2)
    torch.testing.assert_close(blur(x, context(2, step=4)), R.blur_rows(R.blur_rows(x, k, k), k, k))
    assert blur.stage == "image" and R.GaussianBlur(on="grad").stage == "grad"


def test_clip_small_norm_zeroes_the_pixels_below_the_percentile_or_threshold():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # pixel norms 1, 2, 3, 4
    by_pct = R.ClipSmallNorm(percentile=50)(x, context(1))  # numpy's percentile: 2.5
    assert by_pct[0, 0].tolist() == [[0.0, 0.0], [3.0, 4.0]]
    by_abs = R.ClipSmallNorm(threshold=2.0)(x, context(1))  # Garon: norm < 2 -> 0
    assert by_abs[0, 0].tolist() == [[0.0, 2.0], [3.0, 4.0]]
    with pytest.raises(DGNError, match="exactly one"):
        R.ClipSmallNorm()


def test_clip_small_contribution_uses_grad_times_minus_x():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = 1.0
    ctx = context(1)
    ctx.grad = torch.zeros_like(x)
    ctx.grad[0, 0] = torch.tensor([[5.0, -1.0], [-2.0, -3.0]])  # contributions -5, 1, 2, 3
    absolute = R.ClipSmallContribution(percentile=50)(x, ctx)  # |c| median 2.5: zero 1 and 2
    assert absolute[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    signed = R.ClipSmallContribution(percentile=50, absolute=False)(x, ctx)  # median 1.5: zero -5 and 1
    assert signed[0, 0].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_jitter_is_torch_roll_per_row_and_is_undone_exactly():
    x = torch.randn(3, 2, 5, 7)
    shifts = torch.tensor([[1, -2], [3, 4], [-6, 0]])
    rolled = R.roll_rows(x, shifts)
    for i in range(3):
        assert torch.equal(rolled[i], torch.roll(x[i], tuple(shifts[i].tolist()), dims=(1, 2)))
    assert torch.equal(R.roll_rows(rolled, -shifts), x)
    # The gradient through the jitter comes back in image coordinates, exactly.
    live = x.clone().requires_grad_(True)
    weight = torch.randn_like(x)
    (grad,) = torch.autograd.grad((R.roll_rows(live, shifts) * weight).sum(), live)
    assert torch.equal(grad, R.roll_rows(weight, -shifts))


def test_jitter_range_scales_with_the_input_and_draws_per_row():
    jitter = R.Jitter(32, reference=224)
    assert jitter.limits((36, 36)) == (5, 5) and jitter.limits((227, 227)) == (32, 32)
    assert R.Jitter(3).limits((36, 36)) == (3, 3)
    many = jitter.shifts([torch.Generator().manual_seed(s) for s in range(200)], (36, 36))
    assert many.abs().max() == 5 and many.min() == -5
    first_alone = jitter.shifts([torch.Generator().manual_seed(0)], (36, 36))
    assert torch.equal(first_alone[0], many[0])


def test_random_scale_is_identity_at_one_and_zooms_about_the_centre():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()
    same = R.RandomScale((1.0, 1.0))(x, context(1))
    torch.testing.assert_close(same, x)
    zoomed = R.RandomScale((0.5, 0.5), mode="nearest")(x, context(1))
    picked = [1, 1, 2, 2]  # the central half, each pixel twice
    assert torch.equal(zoomed[0, 0], x[0, 0][picked][:, picked])
    with pytest.raises(DGNError, match="resize mode"):
        R.RandomScale(mode="bicubic")


def test_l2_decay_and_gradient_inversion_when_the_softmax_saturates():
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(R.L2Decay(0.3)(x, context(2)), x * 0.7)
    from dgn.targets import Target

    ctx = context(3)
    ctx.targets = [Target("fc8", 0), Target("fc8", 0), Target("conv", 0, (0, 0))]
    logits = torch.zeros(3, 5)
    logits[0, 0] = 12.0  # p = 0.99976
    ctx.acts = {"fc8": logits, "conv": torch.full((3, 1, 2, 2), 50.0)}
    g = torch.ones(3, 3, 4, 4)
    out = R.InvertSaturated(0.999)(g, ctx)
    assert out[0].eq(-1).all() and out[1].eq(1).all() and out[2].eq(1).all()


def test_richardson_lucy_undoes_part_of_a_blur_and_blur_deblur_alternates():
    yy, xx = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    sharp = (20 + 200 * ((yy // 4 + xx // 4) % 2)).float().expand(1, 3, 24, 24)  # 4 px checkerboard
    k = R.gaussian_kernel1d(1.2, 7)[None]
    blurred = R.blur_rows(sharp, k, k)
    restored = R.richardson_lucy(blurred, k, k, iterations=10)
    assert (restored - sharp).norm() < 0.85 * (blurred - sharp).norm()  # measured: 0.79

    bd = R.BlurDeblur()
    assert bd.sigma(0) == pytest.approx(1.2 * 0.99) and bd.sigma(10) == pytest.approx(1.2 * 0.99**2)
    assert bd.sigma(100_000) == 0.5
    x = torch.randn(2, 3, 16, 16) * 30
    assert bd(x, context(2, step=3)) is x
    assert bd(x, context(2, step=10)).std() < x.std()  # phase 0: blur
    assert not torch.allclose(bd(x, context(2, step=15)), x)  # phase 5: deblur


# ----- the method on the tiny model ------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in PRESETS if not PRESETS[n].anchor_weight])  # accentuate: test_fourier
def test_every_preset_raises_the_activation(name):
    s = PRESETS[name]
    # From the mean image, so that no row starts from a lucky noise draw. Input transforms (jitter,
    # random scale) move the image under a fixed-position unit, so spatial targets are left to the others.
    targets = ["fc8:1", "fc8:3", "fc6:7"] + ([] if s.stage("input") else ["conv2:2", "conv1:4@3,5"])
    result = make(s, steps=min(s.steps, 40), init="mean").synthesize(targets, restarts=2)
    gain = result.act_end - result.act_start
    assert (gain > 0).all(), (name, gain)
    assert (result.act_best >= result.act_end).all()


def test_presets_carry_the_published_values():
    y4 = preset("yosinski-4")
    assert (y4.steps, y4.step_rule, y4.lr, y4.init_std, y4.clip_pixels) == (1000, "progress", 1e8, 10.0, True)
    assert [type(r).__name__ for r in y4.regularisers] == ["GaussianBlur", "ClipSmallContribution"]
    assert preset("yosinski") == preset("yosinski-3")
    assert preset("deepdream").octaves == 4 and preset("garon").lr_noise == (0.7, 1.7)
    with pytest.raises(DGNError, match="valid: simonyan, yosinski-1.*garon, fourier, maco, accentuate, yosinski"):
        preset("lucid")


@pytest.mark.parametrize("name", ["garon", "wang"])
def test_batched_equals_one_by_one(name):
    am = make(PRESETS[name], steps=12, auto_lr=PRESETS[name].auto_lr[:2])
    batched = am.synthesize(TARGETS, restarts=2, batch_size=10)
    single = am.synthesize(TARGETS, restarts=2, batch_size=1)
    assert [r.key for r in batched.rows] == [r.key for r in single.rows]
    torch.testing.assert_close(batched.codes_last, single.codes_last, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(batched.act_end, single.act_end, rtol=1e-5, atol=1e-5)
    assert torch.equal(batched.best_step, single.best_step) and torch.equal(batched.lr, single.lr)
    assert not torch.equal(batched.codes_last[0], batched.codes_last[1])  # restarts draw differently


def test_auto_lr_keeps_per_row_the_rate_with_the_highest_final_activation():
    base = ImageAMSettings(steps=15, regularisers=(R.Jitter(2), R.L2Decay(0.05)))
    candidates = (0.05, 1.0, 20.0)
    auto = make(base, auto_lr=candidates).synthesize(TARGETS)
    fixed = [make(base, lr=lr).synthesize(TARGETS) for lr in candidates]
    ends = torch.stack([f.act_end for f in fixed])
    pick = ends.argmax(0)
    assert auto.lr.tolist() == [candidates[i] for i in pick]
    assert len(set(pick.tolist())) > 1  # the rows really disagree, so the choice is per row
    for row, i in enumerate(pick.tolist()):
        assert torch.equal(auto.codes_last[row], fixed[i].codes_last[row])
        assert auto.act_end[row] == ends[i, row] == ends[:, row].max()


@pytest.mark.parametrize("rule", ["raw", "progress"])
def test_one_step_is_the_sources_update(rule):
    am = make(steps=2, step_rule=rule, lr=100.0, init_std=10.0, clip_pixels=True, regularisers=(R.L2Decay(0.3),))
    rows = am.plan(["fc8:2"], seed=5)
    low, high = -am._offset.view(1, 3, 1, 1), 255 - am._offset.view(1, 3, 1, 1)
    start = torch.from_numpy(np.random.RandomState(5).normal(0, 10, (1, 3, 36, 36))).float()
    x0 = torch.maximum(torch.minimum(start, high), low)
    live = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(am.classifier.module(live)[0, 2], live)
    rate = 100.0 if rule == "raw" else min(100.0, 2.0 / g.pow(2).sum().item())
    expected = torch.maximum(torch.minimum((x0 + rate * g) * 0.7, high), low)
    result = am.optimise(rows)
    torch.testing.assert_close(result.codes_last, expected)  # the 2nd iterate: one update after the start


def test_start_is_the_seeded_draw_and_the_objective_is_pre_relu():
    am = make(steps=1, init_std=10.0)
    result = am.synthesize(["conv1:4@3,5", "fc8:0"], seed=3)
    x0 = torch.from_numpy(np.random.RandomState(3).normal(0, 10, (3, 36, 36))).float()
    assert torch.equal(result.codes_last[1], x0)  # the tiny net's space is the work space: no conversion
    pre_relu = am.classifier.module.conv1(x0[None])[0, 4, 3, 5]
    assert result.act_start[0] == pytest.approx(pre_relu.item(), abs=1e-5)
    # re-checking saved images runs another memory layout (the loop feeds channels-last to oneDNN), so
    # the recomputed activation agrees within float rounding, not bit for bit
    torch.testing.assert_close(am.activations(result.codes_last, result.rows), result.act_end, rtol=1e-5, atol=1e-5)


def test_octaves_and_their_steps():
    am = make(preset("deepdream"), steps=42)
    assert am.octave_sizes() == [(14, 14), (19, 19), (26, 26), (36, 36)]  # round(36 / 1.4) = 26, ...
    assert am.settings.octave_steps() == [10, 10, 10, 12]
    result = am.synthesize(["fc8:1"])
    assert result.codes_last.shape == (1, 3, 36, 36)


def test_mean_image_start_and_a_torchvision_space_classifier():
    rgb = torch.rand(3, 36, 36)
    am = make(steps=1, init="mean")
    am = ImageAM(am.classifier, am.settings, "cpu", mean_image=rgb)
    expected = spaces.from_rgb01(rgb[None], spaces.CAFFE_BGR_IMAGENET)
    torch.testing.assert_close(am.synthesize(["fc8:0"]).codes_last, expected, rtol=1e-5, atol=1e-3)
    assert "given image" in am.describe()["mean_image"]

    tv = Classifier(tiny_pair()[1].module, spaces.TORCHVISION_IMAGENET.with_size((36, 36)), "tiny-tv", "random")
    am = ImageAM(tv, ImageAMSettings(steps=20, init="mean"), "cpu")
    x = torch.randn(2, 3, 36, 36)
    torch.testing.assert_close(am.from_classifier(am.to_classifier(x)), x, rtol=1e-4, atol=1e-3)
    result = am.synthesize(["fc8:1", "fc6:2"])
    assert am.output_space.name == "torchvision-imagenet"
    assert (result.act_end > result.act_start).all()
    torch.testing.assert_close(am.activations(result.codes_last, result.rows), result.act_end)


def test_view_boxes_and_render():
    am = make(steps=1)
    result = am.synthesize(["fc8:0", "conv1:4@3,5"])
    rf = receptive_field(am.classifier.module, "conv1", (3, 5), (3, 36, 36))
    assert result.view_boxes == [(0, 0, 36, 36), rf]
    images = am.render(result.codes_last, result.view_boxes)
    assert images[0].shape == (3, 36, 36) and images[1].shape == (3, rf[2], rf[3])
    assert make(steps=1, crop_receptive_field=False).view_box(result.rows[1].target) == (0, 0, 36, 36)


def test_run_writer_manifest_outputs_and_resume(tmp_path):
    am = make(PRESETS["garon"], steps=6)
    config = {**am.describe(), "targets": TARGETS}
    writer = RunWriter(tmp_path, config, display="mean")
    am.synthesize(TARGETS, restarts=2, batch_size=4, on_chunk=lambda part: writer.write(part, am))
    manifest = writer.finish()
    assert len(manifest["rows"]) == 10 and read_manifest(tmp_path)["finished"] is True
    for row in manifest["rows"]:
        assert (tmp_path / row["image"]).is_file() and (tmp_path / row["image_best"]).is_file()
        assert load_file(tmp_path / row["code"])["last"].shape == (3, 36, 36)
    config = json.loads((tmp_path / "manifest.json").read_text())["config"]
    assert config["method"] == "image-am" and config["preset"] == "garon"
    assert next(r["kind"] for r in config["settings"]["regularisers"]) == "Jitter"
    resumed = RunWriter(tmp_path, {**am.describe(), "targets": TARGETS}, resume=True)
    assert am.synthesize(TARGETS, restarts=2, skip=resumed.done_keys()) is None
    with pytest.raises(DGNError, match="differs in settings"):
        RunWriter(tmp_path, {**make(PRESETS["garon"], steps=7).describe(), "targets": TARGETS}, resume=True)


def test_no_hooks_left_and_bad_settings_are_clear():
    am = make(PRESETS["garon"], steps=4)
    am.synthesize(TARGETS)
    assert hooks_left(am.classifier.module) == 0
    for bad, message in [
        ({"steps": 0}, "steps"), ({"step_rule": "sgd"}, "step rule"), ({"init": "zeros"}, "init"),
        ({"lr": 0.0}, "learning rates"), ({"octaves": 3, "steps": 2}, "octave"),
        ({"regularisers": ("blur",)}, "not a regulariser"),
    ]:
        with pytest.raises(DGNError, match=message):
            ImageAMSettings(**bad)
    with pytest.raises(DGNError, match="valid units are 0..4"):
        am.synthesize(["fc8:9"])


def test_cli_run_writes_a_run_and_errors_are_one_line(tmp_path, capsys):
    from dgn.cli.baseline import add_arguments, run, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "wang", "--classifier", "resnet20-cifar10", "--random-weights",
                              "--target", "linear:0-1", "--steps", "2", "--lr", "auto", "--device", "cpu",
                              "--out", str(tmp_path)])
    assert run(args) == 0
    manifest = read_manifest(tmp_path)
    assert [r["target"] for r in manifest["rows"]] == ["linear:0", "linear:1"]
    assert manifest["config"]["settings"]["auto_lr"] == [0.75, 1.5, 3.0, 6.0]
    assert "lr" in capsys.readouterr().out
    args.lr, args.preset, args.steps = "2", "deepdream", None
    assert settings_from_args(args).lr == 2.0 and settings_from_args(args).auto_lr == ()
    args.lr = "auto"
    assert settings_from_args(args).auto_lr == (0.75, 1.5, 3.0, 6.0)  # 0.5..4 x deepdream's 1.5
    args.lr = "fast"
    with pytest.raises(DGNError, match="--lr must be"):
        settings_from_args(args)


@pytest.mark.parametrize(("size", "kernel", "stride", "padding"), [(36, 11, 4, 2), (35, 11, 4, 0), (33, 3, 2, 1), (20, 7, 3, 3)])
def test_sub_pixel_input_gradient_equals_autograd_and_the_conv_is_restored(size, kernel, stride, padding):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, kernel, stride, padding)
    x = torch.randn(2, 3, size, size + 1, requires_grad=True)
    out = conv(x)
    weight = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, weight)
    fast = strided_conv_input_grad(weight, conv.weight.detach(), stride, padding, tuple(x.shape[-2:]))
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)
    with image_gradient_only(conv):
        out2 = conv(x)
        (through,) = torch.autograd.grad(out2, x, weight)
    assert torch.equal(out2, out)  # the forward is the same conv2d call
    torch.testing.assert_close(through, expected, rtol=1e-5, atol=1e-5)
    assert "forward" not in conv.__dict__ and conv.weight.grad is None


def test_diversity_on_pixels_separates_restarts_and_keeps_them_in_one_batch():
    """The pixel parameterisation takes the same diversity term; batch size 1 still runs a target's
    restarts together, so it equals batch size 4."""
    from dgn.layers import forward_to
    from dgn.objectives import Diversity

    _, clf = tiny_pair()
    base = ImageAMSettings(steps=10, lr=1.0)
    similarity = {}
    for weight in (0.0, 20.0):
        am = ImageAM(clf, replace(base, diversity=weight, diversity_layer="conv2"), "cpu")
        result = am.synthesize(["fc8:1"], restarts=2, batch_size=1)
        with torch.no_grad():
            acts = forward_to(clf.module, result.codes_last, ["conv2"])
        similarity[weight] = -float(Diversity(["t", "t"], ["conv2", "conv2"])(acts)[0])
        if weight:
            torch.testing.assert_close(result.codes_last, am.synthesize(["fc8:1"], restarts=2, batch_size=4).codes_last)
    assert similarity[20.0] < similarity[0.0] - 0.05, similarity


def test_a_preset_that_leaves_its_images_flat_says_so(tmp_path, capsys):
    """Yosinski's presets barely move a small net in 200 steps: the run warns instead of passing off grey images."""
    from dgn.cli import main

    out = tmp_path / "flat"
    assert main(["baseline", "--preset", "yosinski-2", "--classifier", "cifar-caffenet", "--device", "cpu",
                 "--target", "fc8:0", "--steps", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: 1 of 1 images are flat" in printed and "published for 750 steps" in printed
    assert json.loads((out / "manifest.json").read_text())["rows"][0]["contrast"] < 4
    assert main(["baseline", "--preset", "simonyan", "--classifier", "cifar-caffenet", "--device", "cpu",
                 "--target", "fc8:0", "--steps", "50", "--out", str(tmp_path / "moving")]) == 0
    assert "warning" not in capsys.readouterr().out
