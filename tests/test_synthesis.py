import numpy as np
import pytest
import torch

from dgn import spaces
from dgn.errors import DGNError
from dgn.layers import forward_to, hooks_left
from dgn.models import load_classifier, load_generator
from dgn.objectives import UnitReference
from dgn.params import initial_codes
from dgn.synthesis import DGNAM, ActMaxSettings, RowTransforms
from tests.tiny import CODE, tiny_pair

TARGETS = ["fc8:0", "fc8:3", "fc6:7", "conv2:2", "conv1:4@3,5"]


def make(steps=40, **kw):
    gen, clf = tiny_pair()
    return DGNAM(gen, clf, ActMaxSettings(steps=steps, **kw), device="cpu")


def test_activation_rises_for_fc_and_conv_targets():
    result = make(steps=60).synthesize(TARGETS, restarts=2, batch_size=16)
    gain = result.act_end - result.act_start
    assert (gain > 0).all(), gain
    assert (result.act_best >= result.act_end).all()


def test_batched_equals_one_by_one():
    dgnam = make(steps=25)
    batched = dgnam.synthesize(TARGETS, restarts=2, batch_size=10)
    single = dgnam.synthesize(TARGETS, restarts=2, batch_size=1)
    assert [r.key for r in batched.rows] == [r.key for r in single.rows]
    torch.testing.assert_close(batched.codes_last, single.codes_last, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batched.act_end, single.act_end, rtol=1e-4, atol=1e-4)
    assert torch.equal(batched.best_step, single.best_step)


def test_same_seed_same_images_and_restarts_differ():
    a = make(steps=10).synthesize(["fc8:1"], restarts=2, seed=3)
    b = make(steps=10).synthesize(["fc8:1"], restarts=2, seed=3)
    assert torch.equal(a.codes_last, b.codes_last)
    assert not torch.equal(a.codes_last[0], a.codes_last[1])
    assert [r.seed for r in a.rows] == [3, 4]


def test_initial_code_is_the_original_act_max_draw():
    np.random.seed(0)
    expected = np.random.normal(0, 1, (1, 4096))
    assert torch.equal(initial_codes([0], (4096,)), torch.from_numpy(expected).float())


@pytest.mark.parametrize("steps", [2, 5, 12])
def test_bounds_hold_after_every_step(steps):
    upper = torch.linspace(0.5, 3.0, CODE)
    result = make(steps=steps).synthesize(["fc8:1", "conv2:0"], restarts=2, upper_bound=upper)
    # codes_last is the iterate after steps-1 updates; every update clips to [0, upper] then decays.
    for codes in (result.codes_last, result.codes_best[result.best_step > 0]):
        assert (codes >= 0).all() and (codes <= upper * 0.99 + 1e-6).all()


def test_one_step_is_the_l1_normalised_act_max_update():
    dgnam = make(steps=2, lr_start=8.0, lr_end=0.0)
    rows = dgnam.plan(["fc8:2"])
    code0 = initial_codes([0], (CODE,))
    live = code0.clone().requires_grad_(True)
    image = spaces.convert(dgnam.generator(live), dgnam.generator.space, dgnam.classifier.space)
    (grad,) = torch.autograd.grad(dgnam.classifier.module(image)[0, 2], live)
    expected = (code0 + 8.0 * grad / grad.abs().mean()).clamp(0, 3.0) * 0.99
    result = dgnam.optimise(rows, upper_bound=3.0)
    torch.testing.assert_close(result.codes_last, expected)  # the image of step 1 comes from code after 1 update


def test_lr_schedule_is_linear_from_8_towards_zero():
    s = ActMaxSettings()
    assert s.lr(0) == 8.0
    assert s.lr(199) == pytest.approx(0.04, rel=1e-6)


def test_nan_rows_are_skipped_and_others_move():
    dgnam = make(steps=3)
    rows = dgnam.plan(["fc8:0", "fc8:1"])

    def objective(acts, codes):
        values = acts["fc8"][:, :2].diagonal()
        return torch.stack([values[0] * torch.tensor(float("nan")), values[1]])

    objective.layers = ("fc8",)
    result = dgnam.optimise(rows, objective=objective)
    start = initial_codes([0, 0], (CODE,))
    assert torch.equal(result.codes_last[0], start[0])
    assert not torch.equal(result.codes_last[1], start[1])


def test_no_hooks_left_after_synthesis():
    dgnam = make(steps=2)
    dgnam.synthesize(TARGETS)
    assert hooks_left(dgnam.classifier.module) == 0


def test_bad_inputs_are_clear():
    dgnam = make(steps=2)
    with pytest.raises(DGNError, match="valid units are 0..4"):
        dgnam.synthesize(["fc8:9"])
    with pytest.raises(DGNError, match="batch size"):
        dgnam.synthesize(["fc8:1"], batch_size=0)
    with pytest.raises(DGNError, match="16 units"):
        dgnam.synthesize(["fc8:1"], upper_bound=torch.ones(5))
    with pytest.raises(DGNError, match="steps"):
        ActMaxSettings(steps=0)


def test_real_architectures_fc6_prior_drives_caffenet():
    gen = load_generator("deepsim-fc6", random_weights=True)
    clf = load_classifier("caffenet", random_weights=True)
    # lr 8 makes the first steps jump to the corners of the bound box; give the schedule room to settle.
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=20), device="cpu")
    result = dgnam.synthesize(["fc8:945", "conv5:12"], batch_size=2)
    assert (result.act_end > result.act_start).all()
    # conv5 at the centre (6, 6): the original cropped its images to the 163x163 receptive field at (32, 32)
    # of the 227 input, i.e. (46, 46) in the 256 generator image.
    assert result.view_boxes == [(14, 14, 227, 227), (46, 46, 163, 163)]
    images = dgnam.render(result.codes_last, result.view_boxes)
    assert images[0].shape == (3, 227, 227) and images[1].shape == (3, 163, 163)


def test_fc6_prior_drives_a_torchvision_model_through_the_pixel_space_adapter():
    gen = load_generator("deepsim-fc6", random_weights=True)
    clf = load_classifier("alexnet", random_weights=True)
    assert clf.space.name == "torchvision-imagenet" and clf.space.size == (224, 224)
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=5), device="cpu")
    result = dgnam.synthesize(["fc8:1", "conv5:3"])  # aliases of torchvision AlexNet
    assert [r.target.layer for r in result.rows] == ["classifier.6", "features.10"]
    assert (result.act_end > result.act_start).all()


ROBUST = {"jitter": 2, "scale_jitter": 0.1, "flip": True}


@pytest.mark.parametrize("options", [ROBUST, {"score": "contrast"}, dict(ROBUST, score="log_softmax")])
def test_robust_options_keep_batched_equal_to_one_by_one(one_thread, options):
    dgnam = make(steps=12, **options)
    batched = dgnam.synthesize(TARGETS, restarts=2, batch_size=10)
    single = dgnam.synthesize(TARGETS, restarts=2, batch_size=1)
    torch.testing.assert_close(batched.codes_last, single.codes_last, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batched.act_best, single.act_best, rtol=1e-4, atol=1e-4)
    again = dgnam.synthesize(TARGETS, restarts=2, batch_size=10)
    assert torch.equal(batched.codes_last, again.codes_last)  # same seed, same transforms
    plain = make(steps=12).synthesize(TARGETS, restarts=2, batch_size=10)
    assert not torch.allclose(plain.codes_last, batched.codes_last)  # the option does change the run


def test_jitter_is_an_exact_whole_pixel_shift_within_range(one_thread):
    rows = make().plan(["fc8:0", "fc8:1", "fc8:2"], restarts=4)
    images = torch.randn(len(rows), 3, 12, 12)
    moved = RowTransforms(rows, jitter=2, scale_jitter=0.0, flip=False)(images)
    shifts = set()
    for before, after in zip(images, moved):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.allclose(torch.roll(before, (dy, dx), (1, 2))[:, 2:-2, 2:-2], after[:, 2:-2, 2:-2],
                                   atol=1e-5)]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 1  # rows draw different shifts


def test_a_rows_transforms_do_not_depend_on_its_batch():
    rows = make().plan(["fc8:0", "fc8:3", "conv2:1"], restarts=2)
    together = RowTransforms(rows, 3, 0.2, True)
    alone = [RowTransforms([r], 3, 0.2, True) for r in rows]
    for _ in range(3):
        torch.testing.assert_close(together.thetas(8, 8), torch.cat([t.thetas(8, 8) for t in alone]))


def test_scores_subtract_the_other_units_mean_or_their_log_sum_exp():
    dgnam = make()
    rows = dgnam.plan(["fc8:1", "conv2:3@2,5"])
    acts = {"fc8": torch.randn(2, 5), "conv2": torch.randn(2, 8, 9, 9)}
    others = torch.cat([acts["fc8"][0, :1], acts["fc8"][0, 2:]]).mean()
    targets = [r.target for r in rows]
    contrast = UnitReference(targets, "contrast")(acts)
    torch.testing.assert_close(contrast[0], others)
    torch.testing.assert_close(contrast[1], torch.cat([acts["conv2"][1, :3, 2, 5], acts["conv2"][1, 4:, 2, 5]]).mean())
    softmax = UnitReference(targets, "log_softmax")(acts)
    torch.testing.assert_close(softmax[0], torch.logsumexp(acts["fc8"][0], 0))
    assert UnitReference(targets, "contrast", [targets[1], None])(acts)[0] == 0  # a pair row has no reference


def test_contrast_score_raises_the_targets_lead_and_reports_the_units_own_activation(one_thread):
    targets = ["fc8:0", "fc8:1", "fc8:2", "fc8:3", "fc8:4"]
    plain = make(steps=30).synthesize(targets, restarts=2)
    contrast = make(steps=30, score="contrast").synthesize(targets, restarts=2)
    dgnam = make()

    def lead(result):
        image = dgnam.image_for_classifier(result.codes_last)
        with torch.no_grad():
            logits = forward_to(dgnam.classifier.module, image, ["fc8"])["fc8"]
        units = torch.tensor([r.target.unit for r in result.rows])
        own = logits[torch.arange(len(units)), units]
        torch.testing.assert_close(own, result.act_end, rtol=1e-4, atol=1e-4)  # act_end is the unit itself
        return own - (logits.sum(1) - own) / 4

    assert lead(contrast).mean() > lead(plain).mean()


def test_bad_robust_options_are_clear():
    with pytest.raises(DGNError, match="valid: unit, contrast, log_softmax"):
        ActMaxSettings(score="softmax")
    with pytest.raises(DGNError, match="jitter"):
        ActMaxSettings(jitter=-1)


def test_recorded_activations_are_of_the_untransformed_images(one_thread):
    dgnam = make(steps=15, **ROBUST)
    result = dgnam.synthesize(TARGETS, restarts=2)
    start = initial_codes([r.seed for r in result.rows], (CODE,))
    for codes, recorded in ((start, result.act_start), (result.codes_last, result.act_end),
                            (result.codes_best, result.act_best)):
        torch.testing.assert_close(dgnam.activations(codes, result.rows), recorded, rtol=1e-4, atol=1e-4)
