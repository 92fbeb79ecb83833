"""The one loop (dgn.engine) on hand-made problems whose every step can be computed by hand."""

import pytest
import torch

from dgn import spaces, video
from dgn.baseline import ImageAM, ImageAMSettings
from dgn.engine import ActMaxStep, BoxDecay, Problem, StepInfo, optimise
from dgn.layers import forward_to, hooks_left
from dgn.objectives import Objective, UnitObjective
from dgn.params import initial_codes, upper_bound_tensor
from dgn.synthesis import DGNAM, ActMaxSettings
from tests.test_video import tiny_video_world
from tests.tiny import tiny_pair


class Linear(Objective):
    """Row i's value: w_i . x_i (a known gradient: w_i)."""

    layers = ("out",)

    def __call__(self, acts, params=None):
        return acts["out"]


def linear_problem(w: torch.Tensor, start: torch.Tensor, **kw) -> Problem:
    defaults = {
        "start": start,
        "image": lambda x: x,
        "forward": lambda image: {"out": (image * w).flatten(1).sum(1)},
        "objective": Linear(),
        "step": ActMaxStep(8.0, 0.0, 4),
        "project": BoxDecay(0.0, torch.full(start.shape[1:], 5.0), 0.9),
    }
    return Problem(**{**defaults, **kw})


def test_act_max_steps_by_hand():
    w = torch.tensor([[1.0, -2.0, 4.0], [0.5, 0.5, -1.0]])
    x0 = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 3.0]])
    track = optimise(linear_problem(w, x0), steps=4)
    x = x0.clone()
    for step in range(3):  # three updates, then the last step only evaluates
        lr = 8.0 + (0.0 - 8.0) * step / 4
        x = (x + lr * w / w.abs().mean(1, keepdim=True)).clamp(0.0, 5.0) * 0.9
    torch.testing.assert_close(track.last, x)
    torch.testing.assert_close(track.act_end, (w * x).sum(1))
    torch.testing.assert_close(track.act_start, (w * x0).sum(1))
    assert track.params is not None and torch.equal(track.params, track.last)


def test_per_frame_normaliser_by_hand():
    w = torch.tensor([[[1.0, 1.0], [10.0, -10.0]]])  # one row, two frames of very different gradient scale
    x0 = torch.zeros(1, 2, 2)
    problem = linear_problem(w, x0, step=ActMaxStep(2.0, 0.0, 2, per="frame"), project=BoxDecay(None, None, 1.0))
    track = optimise(problem, steps=2)
    torch.testing.assert_close(track.last, 2.0 * w / w.abs().mean(2, keepdim=True))
    per_row = optimise(linear_problem(w, x0, step=ActMaxStep(2.0, 0.0, 2), project=BoxDecay(None, None, 1.0)), 2)
    assert not torch.allclose(per_row.last, track.last)


def test_a_row_with_a_vanished_gradient_stops_and_a_nan_row_skips_its_step():
    w = torch.tensor([[1.0, 1.0], [0.0, 0.0], [float("nan"), 1.0]])
    x0 = torch.ones(3, 2)
    track = optimise(linear_problem(w, x0), steps=3)
    assert torch.equal(track.last[1], x0[1]) and not track.active[1]
    assert torch.equal(track.params[2], x0[2]) and track.active[2]  # NaN: skipped, not stopped
    assert not torch.equal(track.last[0], x0[0])


def test_the_gradient_sees_the_transform_and_the_record_does_not():
    w = torch.tensor([[1.0, 2.0]])
    x0 = torch.tensor([[1.0, 2.0]])  # w . x0 = 5, w . flip(x0) = 4
    flipped = optimise(linear_problem(w, x0, transform=lambda image, step: image.flip(1)), steps=2)
    # the gradient of w . flip(x) is flip(w): the step goes along (2, 1); the recorded value is w . x
    x1 = ((x0 + 8.0 * w.flip(1) / w.abs().mean()).clamp(0, 5) * 0.9)
    torch.testing.assert_close(flipped.last, x1)
    torch.testing.assert_close(flipped.act_start, (w * x0).sum(1))
    torch.testing.assert_close(flipped.act_end, (w * x1).sum(1))


def test_ascend_is_followed_and_objective_recorded():
    w = torch.tensor([[1.0, 2.0]])
    x0 = torch.tensor([[1.0, 1.0]])
    track = optimise(linear_problem(w, x0, ascend=-Linear()), steps=2)
    x1 = ((x0 - 8.0 * w / w.abs().mean()).clamp(0, 5) * 0.9)
    torch.testing.assert_close(track.last, x1)
    torch.testing.assert_close(track.act_end, (w * x1).sum(1))  # the recorded value is the objective's


def test_phases_continue_one_record():
    w = torch.tensor([[1.0, -1.0], [2.0, 1.0]])
    x0 = torch.full((2, 2), 2.0)
    whole = optimise(linear_problem(w, x0), steps=4)
    first = optimise(linear_problem(w, x0), steps=2, evaluate_last=False)
    second = optimise(linear_problem(w, first.params), steps=2, tracker=first, first_step=2)
    for name in ("last", "best", "act_start", "act_end", "act_best", "best_step"):
        assert torch.equal(getattr(whole, name), getattr(second, name)), name


def test_objectives_compose_per_row():
    acts = {"out": torch.tensor([1.0, 2.0])}
    combined = 2.0 * Linear() - Linear() + (-Linear())
    assert torch.equal(combined(acts), torch.zeros(2)) and combined.layers == ("out",)

    class Custom:  # any callable with layers takes part, no fake row needed
        layers = ("out",)

        def __call__(self, acts, params=None):
            return acts["out"] ** 2

    assert torch.equal((Linear() + Custom())(acts), torch.tensor([2.0, 6.0]))


def test_dgnam_is_the_act_max_loop_written_out(one_thread):
    """The engine's DGN-AM equals the original act_max loop, written out here, bit for bit."""
    gen, clf = tiny_pair()
    settings = ActMaxSettings(steps=6)
    dgnam = DGNAM(gen, clf, settings, device="cpu")
    rows = dgnam.plan(["fc8:1", "conv2:3@4,4"], restarts=2)
    result = dgnam.optimise(rows, upper_bound=3.0)

    objective = UnitObjective([r.target for r in rows])
    upper = upper_bound_tensor(3.0, (16,))
    code = initial_codes([r.seed for r in rows], (16,))
    values_seen = []
    for step in range(settings.steps):
        live = code.clone().requires_grad_(True)
        image = spaces.convert(gen(live), gen.space, clf.space)
        values = objective(forward_to(clf.module, image, objective.layers), live)
        values_seen.append(values.detach())
        if step == settings.steps - 1:
            break
        (grad,) = torch.autograd.grad(values.sum(), live)
        lr = settings.lr_start + (settings.lr_end - settings.lr_start) * step / settings.steps
        code = torch.minimum((code + lr * grad / grad.abs().mean(1, keepdim=True)).clamp_min(0), upper) * 0.99
    assert torch.equal(result.codes_last, code)
    assert torch.equal(result.act_end, values_seen[-1]) and torch.equal(result.act_start, values_seen[0])
    assert torch.equal(result.act_best, torch.stack(values_seen).max(0).values)


class Exploding(torch.nn.Module):
    """Raises in its forward pass once ``armed``: a model that fails mid-forward."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x):
        if self.armed:
            raise RuntimeError("boom")
        return x


def _arm(module: torch.nn.Module, name: str) -> Exploding:
    bomb = Exploding()
    parent = module
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, last, torch.nn.Sequential(getattr(parent, last), bomb))
    return bomb


def _dgnam():
    gen, clf = tiny_pair()
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=3, jitter=1), device="cpu")
    return clf.module, lambda: dgnam.synthesize(["fc8:1", "conv2:3@4,4"])


def _image_am():
    _, clf = tiny_pair()
    am = ImageAM(clf, ImageAMSettings(steps=3), device="cpu")
    return clf.module, lambda: am.synthesize(["fc8:1", "conv2:3@4,4"])


def _video():
    generator, model = tiny_video_world()
    synth = video.VideoSynthesizer(generator, model, video.VideoSettings(frames=4, steps=3), device="cpu")
    return model.module, lambda: synth.run(1)


def _mixture():
    from dgn.inspect.mixture import GroupUnits, synthesise_dgnam

    gen, clf = tiny_pair()
    units = GroupUnits("fc6", [1, 2], [0.0, 0.0])
    return clf.module, lambda: synthesise_dgnam(gen, clf, units, ActMaxSettings(steps=3), device="cpu")


@pytest.mark.parametrize("method", [_dgnam, _image_am, _video, _mixture])
def test_no_hooks_left_by_any_method_even_after_an_error_mid_forward(method, one_thread):
    module, run = method()
    before = hooks_left(module)
    run()
    assert hooks_left(module) == before
    first_layer = next(name for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d))
    bomb = _arm(module, first_layer)
    bomb.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        run()
    assert hooks_left(module) == before


def test_step_info_reaches_the_step_rule():
    seen = []

    def step(x, grad, info: StepInfo):
        seen.append((info.step, info.row_scale.clone(), info.acts["out"].requires_grad))
        return x + grad

    w = torch.tensor([[1.0, 3.0]])
    optimise(linear_problem(w, torch.zeros(1, 2), step=step, project=lambda x: x), steps=3, first_step=0)
    assert [s for s, _, _ in seen] == [0, 1] and not any(g for _, _, g in seen)
    assert torch.equal(seen[0][1], torch.tensor([2.0]))



def test_adam_step_ascends_as_torch_adam_descends_the_negative():
    """The Adam step rule moves like torch.optim.Adam minimising -objective (no projection here)."""
    from dgn.engine import AdamStep

    w = torch.tensor([[1.0, -2.0, 4.0], [0.5, 0.5, -1.0]])
    quad = lambda image: {"out": -((image - w) ** 2).flatten(1).sum(1)}
    x0 = torch.zeros(2, 3)
    track = optimise(linear_problem(w, x0, forward=quad, step=AdamStep(0.1), project=lambda x: x), 6,
                     evaluate_last=False)
    x = x0.clone().requires_grad_(True)
    adam = torch.optim.Adam([x], lr=0.1)
    for _ in range(6):
        adam.zero_grad()
        (-quad(x)["out"].sum()).backward()
        adam.step()
    torch.testing.assert_close(track.params, x.detach())


def test_observe_sees_every_iterate_and_its_value():
    w = torch.tensor([[1.0, -2.0, 4.0]])
    seen = []
    track = optimise(linear_problem(w, torch.ones(1, 3), observe=lambda s, x, v: seen.append((s, x.clone(), v))), 4)
    assert [s for s, _, _ in seen] == [0, 1, 2, 3]
    torch.testing.assert_close(seen[-1][1], track.last)
    torch.testing.assert_close(seen[0][2], track.act_start)
    torch.testing.assert_close(seen[-1][2], track.act_end)
