"""DGN-AM code optimisation: many targets x restarts in one batch.

The data path of one step, for a batch of rows (one row = one target x restart)::

    codes -> generator -> spaces.convert(to the classifier's space and size)
          -> classifier, stopped after the deepest target layer
          -> objective: each row's own unit -> one value per row
          -> gradient w.r.t. the codes -> code += lr * g / mean|g| (per row)
          -> clip to [0, upper bound] -> x decay

The defaults reproduce the original act_max (Nguyen et al., 2016): 200 steps, lr linear from 8
to 1e-10, bounds [0, upper], decay 0.99, NaN steps skipped, a row with a zero gradient stops.
Rows are independent, so a batch gives the same result as its rows run one by one.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from dgn import spaces
from dgn.engine import ActMaxStep, Problem, autocast_for, optimise, resolve_device
from dgn.errors import PRECISIONS, DGNError, check_at_least, check_choice, check_decay, check_weight
from dgn.layers import forward_to
from dgn.models import Classifier, Generator, input_shape, model_record
from dgn.objectives import Objective, UnitObjective, UnitReference, as_objective
from dgn.params import GeneratorCodes, render_codes
from dgn.placement import place
from dgn.receptive import ReceptiveFields, generator_view_box
from dgn.rows import (
    Row,
    RowsResult,
    TargetPlanner,
    diversity_among_restarts,
    rows_to_run,
    run_in_chunks,
    stack_starts,
    starts_by_row,
)
from dgn.targets import Target

SCORES = ("unit", "contrast", "log_softmax")


@dataclass(frozen=True)
class ActMaxSettings:
    """Hyper-parameters of the code optimisation (defaults: the original act_max scripts).

    Attributes:
        steps: iterations per row.
        lr_start, lr_end: the step size goes linearly from ``lr_start`` (step 0) towards ``lr_end``
            (reached after ``steps`` steps, as act_max computes it).
        decay: multiply the code by this after clipping (the original's "L2" 0.99); 1 disables.
        lower_bound: clip codes below at this (0: fc6 codes are post-ReLU); None disables.
        precision: "fp32" or "bf16": bf16 autocast on a bf16 copy of the models' convolution and linear
            weights (the models passed in stay fp32); codes, gradients and steps stay fp32. Fast where the
            device has bf16 units (GPUs, CPUs with AMX or AVX512_BF16), slow elsewhere.
        fit_mode: how generator images are cropped/resized to the classifier (see ``spaces.fit``).
        post_relu: maximise the unit after ReLU instead of before (the original: before).
        crop_receptive_field: crop saved images of spatial units to the unit's receptive field.
        stop_early: stop the classifier's forward pass after the deepest target layer.
        pair_gamma: weight of the balance penalty |a - b| on two-neuron rows ("A+B" targets).
        code_penalty: weight of ||code||_2 in every row's objective (eq. 2's lambda; 0 = off).
        pair_smoothing: width delta of a smooth balance penalty sqrt((a - b)^2 + delta^2) - delta
            (0 = eq. 2's |a - b|, the default; see ``dgn.objectives.UnitObjective``).
        jitter: robustness transform (off by default, as the original): for each gradient step the
            classifier's input is shifted by a random whole number of pixels in [-jitter, jitter] per axis.
            Recorded activations (start, end, best) are always those of the untransformed image.
        scale_jitter: likewise, rescaled by a random factor in [1 - s, 1 + s] about the centre.
        flip: likewise, mirrored left-right with probability 1/2.
        score: what each row maximises: "unit" (its unit, the original), "contrast" (its unit minus the
            mean of the other units of its layer at the same position, a class-contrastive score) or
            "log_softmax" (the log-probability of its unit among its layer's units at that position).
        diversity: weight of Lucid's diversity term among the restarts of each target (0 = off): each row
            also ascends minus the mean cosine similarity of its Gram matrix with its siblings' (see
            ``dgn.objectives.Diversity``); the recorded activations stay the target's own. A target's restarts
            then run in one batch.
        diversity_layer: the layer whose Gram matrices are compared (None: each target's own layer).
    """

    steps: int = 200
    lr_start: float = 8.0
    lr_end: float = 1e-10
    decay: float = 0.99
    lower_bound: float | None = 0.0
    precision: str = "fp32"
    fit_mode: str = "auto"
    post_relu: bool = False
    crop_receptive_field: bool = True
    stop_early: bool = True
    pair_gamma: float = 1.0
    code_penalty: float = 0.0
    pair_smoothing: float = 0.0
    jitter: int = 0
    scale_jitter: float = 0.0
    flip: bool = False
    score: str = "unit"
    diversity: float = 0.0
    diversity_layer: str | None = None

    def __post_init__(self) -> None:
        check_at_least("steps", self.steps, 1)
        if self.jitter < 0 or not 0 <= self.scale_jitter < 1:
            raise DGNError(f"jitter must be >= 0 and scale_jitter in [0, 1), got {self.jitter}, {self.scale_jitter}")
        check_choice("score", self.score, SCORES)
        check_choice("precision", self.precision, PRECISIONS)
        check_decay(self.decay)
        check_weight("diversity", self.diversity)
        check_weight("pair_smoothing", self.pair_smoothing)

    def lr(self, step: int) -> float:
        return self.lr_start + (self.lr_end - self.lr_start) * step / self.steps

    @property
    def transforms(self) -> bool:
        """Whether any robustness transform is on."""
        return bool(self.jitter or self.scale_jitter or self.flip)


class RowTransforms:
    """Random robustness transforms of the classifier's input (shift, scale, flip), one draw per row and step.

    Each row draws from its own generator, seeded from the row, so a row's transforms do not depend on
    which other rows share its batch. Integer shifts at scale 1 move pixels exactly; the border is
    filled by reflection.
    """

    def __init__(self, rows: Sequence[Row], jitter: int, scale_jitter: float, flip: bool) -> None:
        self.jitter, self.scale_jitter, self.flip = jitter, scale_jitter, flip
        self.generators = [torch.Generator().manual_seed(zlib.crc32(f"{r.key}/{r.seed}".encode())) for r in rows]

    def thetas(self, height: int, width: int) -> torch.Tensor:
        """This step's (B, 2, 3) affine matrices (output -> input, normalised coordinates)."""
        out = []
        for g in self.generators:
            shift = torch.randint(-self.jitter, self.jitter + 1, (2,), generator=g).double()
            u = torch.rand(2, generator=g, dtype=torch.float64)
            zoom = 1.0 + self.scale_jitter * (2 * float(u[0]) - 1)
            mirror = -1.0 if self.flip and u[1] < 0.5 else 1.0
            out.append([[mirror / zoom, 0.0, -2 * float(shift[1]) / width],
                        [0.0, 1 / zoom, -2 * float(shift[0]) / height]])
        return torch.tensor(out, dtype=torch.float32)

    def __call__(self, images: torch.Tensor, step: int | None = None) -> torch.Tensor:
        """This step's draw for every row (``step`` is not needed: each call takes the next draw)."""
        if images.shape[0] != len(self.generators):
            raise ValueError(f"{images.shape[0]} images for {len(self.generators)} rows")
        theta = self.thetas(*images.shape[-2:]).to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class DGNAM(TargetPlanner):
    """Synthesise preferred inputs of classifier units through a generator prior (DGN-AM).

    Args:
        generator: the image prior (e.g. ``load_generator("deepsim-fc6")``).
        classifier: the network whose units are visualised.
        settings: optimisation hyper-parameters; the defaults are the original's.
        device: "auto" (CUDA when available), "cpu", "cuda", ...

    Example::

        dgnam = DGNAM(load_generator("deepsim-fc6"), load_classifier("caffenet"))
        result = dgnam.synthesize(["fc8:945", "conv5:12"], restarts=2)
        images = dgnam.render(result.codes_last, result.view_boxes)
    """

    def __init__(
        self,
        generator: Generator,
        classifier: Classifier,
        settings: ActMaxSettings | None = None,
        device: str | torch.device | None = "auto",
    ) -> None:
        self.settings = settings or ActMaxSettings()
        self.device = resolve_device(device)
        precision = self.settings.precision
        self.generator = replace(generator, module=place(generator.module, self.device, precision))
        self.classifier = replace(classifier, module=place(classifier.module, self.device, precision))
        self._receptive_fields = ReceptiveFields(self.classifier.module, input_shape(self.classifier))

    # ----- the optimisation ----------------------------------------------------------------------
    def codes(self, upper_bound: float | torch.Tensor | None = None) -> GeneratorCodes:
        """The parameterisation: this generator's codes seen by this classifier, in the settings' box."""
        s = self.settings
        return GeneratorCodes(self.generator, self.classifier.space, s.fit_mode, s.lower_bound, upper_bound, s.decay,
                              self.device)

    def image_for_classifier(self, codes: torch.Tensor) -> torch.Tensor:
        """G(codes) converted to the classifier's pixel space and input size."""
        return self.codes().to_image(codes)

    def optimise(
        self,
        rows: Sequence[Row],
        upper_bound: float | torch.Tensor | None = None,
        objective: Callable | None = None,
        codes: torch.Tensor | None = None,
        progress: Callable[[int], None] | None = None,
        observe: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> RowsResult:
        """Run the act_max loop on ``rows`` as one batch.

        Args:
            rows: the rows (see :meth:`plan`); all run together, so mind the memory.
            upper_bound: scalar or per-code-unit upper bounds; None uses the generator's default.
            objective: per-row objective; default maximises each row's target unit.
            codes: initial codes (B, *code_shape); default from each row's seed.
            progress: called after each step with the number of rows it advanced (for progress bars).
            observe: called with (step, codes, activations) for every iterate (see ``engine.Problem``).
        """
        s = self.settings
        if s.score != "unit" and not all(r.target.is_neuron and (r.partner is None or r.partner.is_neuron)
                                          for r in rows):
            raise DGNError(f"score {s.score!r} compares a neuron with its layer's other units; it needs neuron targets "
                           "(LAYER:UNIT or LAYER:UNIT@Y,X), not channels, layers or directions")
        objective = objective or self.objective(rows)
        param = self.codes(upper_bound)
        module = self.classifier.module
        ascend = self._ascend(rows, objective)
        layers = tuple(dict.fromkeys([*objective.layers, *(ascend.layers if ascend is not None else ())]))
        problem = Problem(
            start=param.start([r.seed for r in rows]) if codes is None else codes.to(self.device, torch.float32),
            image=param.to_image,
            forward=lambda image: forward_to(module, image, layers, s.stop_early),
            objective=objective,
            step=ActMaxStep(s.lr_start, s.lr_end, s.steps),
            project=param.project,
            ascend=ascend,
            transform=RowTransforms(rows, s.jitter, s.scale_jitter, s.flip) if s.transforms else None,
            observe=observe,
        )
        track = optimise(problem, s.steps, s.precision, progress)
        pair_end = None
        if isinstance(objective, UnitObjective) and objective.partners and any(objective.partners):
            with torch.no_grad(), autocast_for(self.device, s.precision):
                acts = forward_to(self.classifier.module, self.image_for_classifier(track.last), objective.layers)
                a, b = objective.pair_values(acts)
            pair_end = torch.stack([a, b], 1).float().cpu()
        return RowsResult(
            list(rows),
            track.last.cpu(),
            track.best.cpu(),
            track.act_start.cpu(),
            track.act_end.cpu(),
            track.act_best.cpu(),
            track.best_step.cpu(),
            [self.view_box(r.target) for r in rows],
            pair_end,
        )

    def _ascend(self, rows: Sequence[Row], objective: Objective) -> Objective | None:
        """What the gradient follows when it is not the recorded objective: a contrastive score, diversity."""
        s = self.settings
        ascend = None
        if s.score != "unit":
            ascend = objective - UnitReference([r.target for r in rows], s.score, [r.partner for r in rows])
        if s.diversity:
            term = diversity_among_restarts(rows, self.classifier.module, s.diversity, s.diversity_layer)
            ascend = (ascend if ascend is not None else as_objective(objective)) + term
        return ascend

    def objective(self, rows: Sequence[Row]) -> UnitObjective:
        """The default objective of these rows: their unit, or their pair of units, per the settings."""
        s = self.settings
        partners = [r.partner for r in rows]
        return UnitObjective([r.target for r in rows], s.post_relu, partners, s.pair_gamma, s.code_penalty,
                             s.pair_smoothing)

    def synthesize(
        self,
        targets: Sequence[str | Target],
        restarts: int = 1,
        seed: int = 0,
        batch_size: int = 16,
        upper_bound: float | torch.Tensor | None = None,
        skip: Iterable[str] = (),
        on_chunk: Callable[[RowsResult], None] | None = None,
        progress: Callable[[int], None] | None = None,
        start: torch.Tensor | None = None,
    ) -> RowsResult | None:
        """Optimise every (target, restart) row in chunks of ``batch_size`` rows.

        Args:
            targets: e.g. ``["fc8:945", "conv5:12@6,6"]``.
            restarts: rows per target; restart r starts from seed ``seed + r``.
            seed: base seed.
            batch_size: rows per batch (memory vs speed); results do not depend on it.
            upper_bound: scalar or per-code-unit upper bounds (None: the generator's default).
            skip: row keys (``Row.key``) to leave out, e.g. rows a resumed run already finished.
            on_chunk: called with each finished chunk's results (to write them as they come).
            progress: called after each step with the number of rows it advanced.
            start: initial codes instead of the seeds' (e.g. of real images, see :mod:`dgn.starts`): one
                code (1, *code_shape) for every row, or one per row of the plan, in its order.

        Returns:
            All rows' results in order, or None when every row was skipped.
        """
        skip = set(skip)
        planned = self.plan(targets, restarts, seed)
        starts = starts_by_row(planned, start)
        rows, batch_size = rows_to_run(planned, skip, batch_size, bool(self.settings.diversity))

        def optimise(chunk: list[Row]) -> RowsResult:
            return self.optimise(chunk, upper_bound, codes=stack_starts(chunk, starts), progress=progress)

        parts = run_in_chunks(rows, batch_size, optimise, on_chunk)
        return RowsResult.concat(parts) if parts else None

    @property
    def output_space(self) -> spaces.PixelSpace:
        """Pixel space of the images :meth:`render` returns."""
        return self.generator.space

    # ----- images --------------------------------------------------------------------------------
    def view_box(self, target: Target) -> tuple[int, int, int, int]:
        """Box (top, left, h, w) of the generator image to show for a target.

        The region the classifier sees; for a spatial unit (with ``crop_receptive_field``) the part of
        it inside the unit's receptive field, found by one backward pass.
        """
        fields = self._receptive_fields if self.settings.crop_receptive_field else None
        return generator_view_box(self.generator.space.size or (0, 0), self.classifier.space.size,
                                  self.settings.fit_mode, target.layer, target.position, fields)

    @torch.no_grad()
    def render(
        self, codes: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], batch_size: int = 16
    ) -> list[torch.Tensor]:
        """Generator images (in the generator's space) of ``codes``, each cropped to its box."""
        return render_codes(self.generator, codes, boxes, self.device, batch_size)

    @torch.no_grad()
    def activations(self, codes: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
        """Each row's objective value for given codes (e.g. to re-check saved codes)."""
        objective = self.objective(rows)
        with autocast_for(self.device, self.settings.precision):
            acts = forward_to(self.classifier.module, self.image_for_classifier(codes.to(self.device)), objective.layers)
            return objective(acts).float().cpu()

    def describe(self) -> dict:
        """The configuration, for a manifest."""
        return {
            "method": "dgn-am",
            "generator": model_record(self.generator),
            "classifier": model_record(self.classifier),
            "settings": asdict(self.settings),
            "device": str(self.device),
        }
