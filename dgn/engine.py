"""The one optimisation loop: every method of dgn is a :class:`Problem` handed to :func:`optimise`.

A problem is made of values: parameters, one row each (generator codes, a video's frame codes, ...);
a parameterisation that turns them into the model's input (``image``); the model's forward pass up to
the layers the objective reads (``forward``); an objective giving one value per row; a step rule and a
projection that move the parameters. The loop around them is written once, here:

    for each step but the last:
        params -> image -> [robustness transform] -> forward -> ascend(acts, params) -> gradient
        record objective(acts of the untransformed image, params) for the iterate just evaluated
        rows with a NaN/inf gradient skip the step; a row whose gradient vanished stops for good
        params <- project(step(params, gradient))
    last step: evaluate only (its update would be unused), as act_max returns the last iterate

A gradient-free step rule (evolution: :mod:`dgn.evolvers`) runs the same loop without gradients: each step
scores a population per row, records each row's best candidate, and asks the rule for the next population.

Rows are independent: nothing here mixes values across the batch dimension, so a batch gives the same
result as its rows run one by one (up to the float kernels' batch-invariance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from dgn.errors import DGNError

Tensor = torch.Tensor
Objective = Callable[[dict[str, Tensor], Tensor], Tensor]


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for precision "bf16"; nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or "auto": CUDA when available, else CPU; otherwise the named device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DGNError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DGNError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return resolved


@dataclass
class IterateTracker:
    """Per-row bookkeeping of the loop: activation at the first, last and best step, and those iterates.

    Records, for the iterate evaluated at each step (before its update): the value at the first step, at
    the last step of each row and at its best step, and the last and best iterates themselves. Rows
    whose gradient vanished are stopped (``active`` False), as act_max stopped.
    """

    last: Tensor
    best: Tensor
    act_start: Tensor
    act_end: Tensor
    act_best: Tensor
    best_step: Tensor
    active: Tensor
    params: Tensor | None = None  # the parameters the loop ended on (after the last update, if any)

    @classmethod
    def starting_from(cls, first: Tensor) -> IterateTracker:
        """A tracker for a batch whose first iterates are ``first`` (batch dimension first)."""
        batch, device = first.shape[0], first.device
        zeros = torch.zeros(batch, device=device)
        return cls(first.clone(), first.clone(), zeros, zeros.clone(), torch.full((batch,), -math.inf, device=device),
                   torch.zeros(batch, dtype=torch.long, device=device), torch.ones(batch, dtype=torch.bool, device=device))

    def record(self, step: int, values: Tensor, iterate: Tensor) -> None:
        """Note each active row's objective ``values`` for the ``iterate`` evaluated at ``step``."""
        per_row = (-1,) + (1,) * (iterate.dim() - 1)
        if step == 0:
            self.act_start = values.clone()
        self.act_end = torch.where(self.active, values, self.act_end)
        self.last = torch.where(self.active.view(per_row), iterate, self.last)
        better = (values > self.act_best) & self.active
        self.act_best = torch.where(better, values, self.act_best)
        self.best_step = torch.where(better, torch.full_like(self.best_step, step), self.best_step)
        self.best = torch.where(better.view(per_row), iterate, self.best)

    def gate(self, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Which rows take this step, from their gradient: not NaN/inf and not vanished.

        Returns:
            (moving, scale, finite): rows to update, each row's mean |grad| (act_max's step normaliser),
            and rows with a finite gradient. Rows whose gradient vanished stop for good.
        """
        scale = grad.abs().flatten(1).mean(1)
        finite = torch.isfinite(grad).flatten(1).all(1) & torch.isfinite(scale)
        moving = self.active & finite & (scale > 0)
        self.active = self.active & ~(finite & (scale == 0))
        return moving, scale, finite


@dataclass
class StepInfo:
    """What a step rule may need besides the parameters and their gradient.

    Attributes:
        step: the step index (counted over the whole run, e.g. across octaves).
        row_scale: (B,) each row's mean |gradient|.
        acts: this step's captured outputs, detached (of the transformed input the gradient came from).
    """

    step: int
    row_scale: Tensor
    acts: dict[str, Tensor]


@dataclass(frozen=True)
class ActMaxStep:
    """act_max's step: ``x + lr(step) * g / mean|g|``, lr linear from ``lr_start`` towards ``lr_end``.

    Args:
        lr_start, lr_end: the schedule, reaching ``lr_end`` after ``steps`` steps (as act_max computes it).
        steps: the run's length.
        per: the normaliser's group: "row" (one mean |g| per row, DGN-AM) or "frame" (one per entry of the
            second dimension, the video codes' frames).
    """

    lr_start: float
    lr_end: float
    steps: int
    per: str = "row"

    def lr(self, step: int) -> float:
        return self.lr_start + (self.lr_end - self.lr_start) * step / self.steps

    def __call__(self, params: Tensor, grad: Tensor, info: StepInfo) -> Tensor:
        lr, row_scale = self.lr(info.step), info.row_scale
        if self.per == "frame":  # written as the video loop always was, (lr / scale) * g: the same bits
            scale = grad.abs().flatten(2).mean(2)
            rate = torch.where(scale > 0, lr / scale.clamp_min(1e-30), torch.zeros_like(scale))
            return params + rate.view(*rate.shape, *(1,) * (grad.dim() - 2)) * grad
        return params + lr * grad / row_scale.clamp_min(1e-30).view(-1, *(1,) * (grad.dim() - 1))


class AdamStep:
    """Adam ascent, ``x + lr * m_hat / (sqrt(v_hat) + eps)``, elementwise, so rows stay independent.

    Holds its moments, so use one instance per run. A non-finite gradient entry counts as 0 in the
    moments (its row does not move that step anyway).
    """

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m: Tensor | None = None
        self.v: Tensor | None = None
        self.t = 0

    def __call__(self, params: Tensor, grad: Tensor, info: StepInfo) -> Tensor:
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(grad), torch.zeros_like(grad)
        b1, b2 = self.betas
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        return params + self.lr * m_hat / (v_hat.sqrt() + self.eps)


@dataclass(frozen=True)
class BoxDecay:
    """act_max's projection: clip to [lower, upper] (each may be None), then multiply by ``decay``."""

    lower: float | None = 0.0
    upper: Tensor | None = None
    decay: float = 1.0

    def __call__(self, params: Tensor) -> Tensor:
        if self.lower is not None:
            params = params.clamp_min(self.lower)
        if self.upper is not None:
            params = torch.minimum(params, self.upper)
        return params * self.decay


@dataclass
class Problem:
    """One batch of independent rows to optimise, as values.

    Attributes:
        start: (B, ...) initial parameters, one row each.
        image: parameters -> the model's input (differentiable).
        forward: the model's input -> the captured outputs the objectives read.
        objective: ``(acts, params) -> (B,)``: what is recorded (start, end, best) for each iterate.
        step: ``(params, grad, StepInfo) -> params`` before projection.
        project: keeps parameters in bounds after each step.
        iterate: what the tracker records for the parameters (default: the parameters themselves).
        ascend: what the gradient follows, when it differs from ``objective`` (e.g. a contrastive score).
        transform: ``(input, step) -> input``, a random robustness transform of the model's input on
            gradient steps; the recorded value is always that of the untransformed input.
        observe: called with ``(step, iterate, values)`` for every iterate evaluated (to follow a run step
            by step, as act_max's debug output); values are the rows' recorded objective values. With a
            gradient-free step rule: ``(step, population, scores)``, the whole generation and its scores.

    A gradient-free step rule (``step.gradient_free``, e.g. :class:`dgn.evolvers.Genetic`) makes ``start``
    a population per row (rows, P, ...): ``image``, ``forward`` and ``objective`` then see every candidate
    (``objective`` returns rows x P scores, row-major), and the rule's ``tell`` replaces ``step``.
    """

    start: Tensor
    image: Callable[[Tensor], Tensor]
    forward: Callable[[Tensor], dict[str, Tensor]]
    objective: Objective
    step: Callable[[Tensor, Tensor, StepInfo], Tensor]
    project: Callable[[Tensor], Tensor] = lambda params: params
    ascend: Objective | None = None
    transform: Callable[[Tensor, int], Tensor] | None = None
    iterate: Callable[[Tensor], Tensor] = lambda params: params
    observe: Callable[[int, Tensor, Tensor], None] | None = None


def optimise(problem: Problem, steps: int, precision: str = "fp32", progress: Callable[[int], None] | None = None,
             tracker: IterateTracker | None = None, first_step: int = 0, evaluate_last: bool = True) -> IterateTracker:
    """Run the loop for ``steps`` steps and return its tracker (``tracker.params``: the final parameters).

    Args:
        problem: the rows and the values that define the method.
        steps: steps per row, >= 1.
        precision: "fp32", or "bf16" for the image and forward pass under autocast (parameters, the
            gradient and the step stay in fp32).
        progress: called after each step with the number of rows it advanced.
        tracker, first_step: continue an earlier call's record from global step ``first_step`` (a method
            that optimises in phases, e.g. octaves of growing size).
        evaluate_last: the last step only evaluates (the end of a run); False: it updates too (a phase).
    """
    p = problem
    x = p.start.float().clone()
    device, batch = x.device, x.shape[0]
    if getattr(p.step, "gradient_free", False):
        return _evolve(p, x, steps, precision, progress, tracker, first_step, evaluate_last)
    per_row = (batch,) + (1,) * (x.dim() - 1)
    track = tracker if tracker is not None else IterateTracker.starting_from(p.iterate(x))
    for step in range(first_step, first_step + steps):
        if evaluate_last and step == first_step + steps - 1:  # the last iterate is the result: no update
            with torch.no_grad(), autocast_for(device, precision):
                values = p.objective(p.forward(p.image(x)), x)
            track.record(step, values.float(), p.iterate(x))
            if p.observe is not None:
                p.observe(step, p.iterate(x), values.float())
            break
        live = x.detach().requires_grad_(True)
        with torch.enable_grad():  # also when the caller runs under torch.no_grad()
            with autocast_for(device, precision):
                image = p.image(live)
                if p.transform is not None:
                    seen = image.detach()
                    image = p.transform(image, step)
                acts = p.forward(image)
                values = p.objective(acts, live)
                target = p.ascend(acts, live) if p.ascend is not None else values
            (grad,) = torch.autograd.grad(target.sum(), live)
        if p.transform is not None:  # record the untransformed input's value, as every other step
            with torch.no_grad(), autocast_for(device, precision):
                values = p.objective(p.forward(seen), x)
        track.record(step, values.detach().float(), p.iterate(x.detach()))
        if p.observe is not None:
            p.observe(step, p.iterate(x.detach()), values.detach().float())
        grad = grad.float()
        moving, scale, _ = track.gate(grad)
        info = StepInfo(step, scale, {k: v.detach() for k, v in acts.items()})
        updated = p.project(p.step(x, grad, info))
        x = updated if bool(moving.all()) else torch.where(moving.view(per_row), updated, x)
        if progress is not None:
            progress(batch)
    if progress is not None and evaluate_last:
        progress(batch)
    track.params = x
    return track


def _evolve(p: Problem, x: Tensor, steps: int, precision: str, progress: Callable[[int], None] | None,
            tracker: IterateTracker | None, first_step: int, evaluate_last: bool) -> IterateTracker:
    """The loop for a gradient-free step rule (see :mod:`dgn.evolvers`): ``x`` holds a population per row
    (rows, P, ...); every candidate is scored without gradients, each row records its best candidate of the
    generation, and the rule's ``tell(population, scores (rows, P))`` gives the next population."""
    rows, population = x.shape[:2]
    track = tracker if tracker is not None else IterateTracker.starting_from(p.iterate(x[:, 0]))
    for step in range(first_step, first_step + steps):
        with torch.no_grad(), autocast_for(x.device, precision):
            scores = p.objective(p.forward(p.image(x)), x).float().view(rows, population)
        best = torch.nan_to_num(scores, nan=-math.inf).argmax(1)
        values = scores.gather(1, best[:, None])[:, 0]
        iterate = p.iterate(x[torch.arange(rows, device=x.device), best])
        track.record(step, values, iterate)
        if p.observe is not None:
            p.observe(step, x, scores)
        if evaluate_last and step == first_step + steps - 1:
            break
        x = p.project(p.step.tell(x, scores).to(x.device))
        if progress is not None:
            progress(rows)
    if progress is not None and evaluate_last:
        progress(rows)
    track.params = x
    return track
