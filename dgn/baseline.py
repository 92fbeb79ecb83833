"""Image-space activation maximisation: optimise pixels directly, many targets at once.

The baseline DGN-AM is compared with. One row per (target, restart), rows independent, the same
targets, outputs and manifest as :class:`dgn.synthesis.DGNAM`; the "codes" are the images
themselves, in the classifier's pixel space. One step, for a batch of rows::

    image (work space, at the octave's size) -> upsample to the input size
          -> input regularisers (jitter, random scale; drawn per row)
          -> spaces.convert(to the classifier's space) -> classifier, stopped after the deepest target
          -> each row's own unit (pre-ReLU, as the core) -> gradient w.r.t. the image
          -> gradient regularisers (blur, inversion when saturated)
          -> step (l1: lr * g / mean|g|; raw: lr * g; progress: min(lr, progress / |g|^2) * g)
          -> image regularisers (L2 decay, blur, blur/deblur, small-norm and small-contribution clipping)
          -> optional clamp to the valid pixel range

The *work space* is Caffe's (0..255, BGR, minus the ImageNet mean) at the classifier's input size:
the units the sources state their parameters in (N(0, 10) starts, learning rate 100, pixel-norm
threshold 2), whatever space the classifier expects. Activations are recorded on the un-jittered
image at full scale, so act_start / act_end / act_best mean what they mean for DGN-AM.

Its settings and the named presets that reproduce the sources live in :mod:`dgn.image_settings`
(re-exported here: ``from dgn.baseline import ImageAMSettings, PRESETS, preset`` works).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgn import regularisers as R
from dgn import spaces
from dgn.engine import AdamStep, IterateTracker, Problem, StepInfo, optimise, resolve_device
from dgn.errors import DGNError
from dgn.fourier import FourierImages
from dgn.image_grad import image_gradient_only
from dgn.image_settings import PRESET_ALIASES, PRESETS, ImageAMSettings, preset
from dgn.layers import forward_to, resolve_layer
from dgn.maco import CropsAndNoise, MacoImages
from dgn.models import Classifier, input_shape, model_record
from dgn.objectives import FeatureAnchor, Objective, UnitObjective, as_objective
from dgn.params import Pixels, resize
from dgn.placement import place
from dgn.receptive import ReceptiveFields
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

__all__ = ["FLAT", "PRESETS", "PRESET_ALIASES", "ImageAM", "ImageAMResult", "ImageAMSettings", "attribution_map", "preset",
           "write_attribution"]

# ----- the method ------------------------------------------------------------------------------------
# A final image whose contrast (per-channel standard deviation over its pixels, averaged over channels, in
# grey levels 0..255) is below this is flat: e.g. a preset run far below its published step count. Measured on
# the CIFAR world at 200 steps: yosinski-1..4 0.5-2.5, every other preset 30-60.
FLAT = 4.0


@dataclass
class ImageAMResult(RowsResult):
    """:class:`RowsResult` whose codes are images (B, C, H, W) in the classifier's space, plus each row's
    learning rate (the chosen one under ``auto_lr``), its final image's contrast (see :data:`FLAT`) and its
    attribution map (B, H, W): |d objective / d image| summed over the steps and averaged over the colour
    channels, MACO's "transparency" (Fel et al. 2023), on the run's canvas."""

    lr: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    contrast: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    attribution: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def row_extra(self, index: int) -> dict:
        extra = {"lr": float(self.lr[index])} if self.lr.numel() > index else {}
        if self.contrast.numel() > index:
            extra["contrast"] = round(float(self.contrast[index]), 4)
        return extra

    @staticmethod
    def concat(parts: Sequence[RowsResult]) -> ImageAMResult:
        base = RowsResult.concat(parts)
        def cat(name: str) -> torch.Tensor:
            return torch.cat([getattr(p, name, torch.empty(0)) for p in parts])

        return ImageAMResult(**vars(base), lr=cat("lr"), contrast=cat("contrast"), attribution=cat("attribution"))


class _ImageStep:
    """Image-space AM's step rule: gradient regularisers, the settings' step (l1, raw or progress, with
    optional per-row lr noise) and image regularisers (the pixel clamp is the parameterisation's)."""

    def __init__(self, am: ImageAM, lr: float, rngs: list[torch.Generator], targets: list[Target]) -> None:
        self.am, self.lr, self.rngs, self.targets = am, lr, rngs, targets
        self.grad_regs, self.image_regs = am.settings.stage("grad"), am.settings.stage("image")

    def __call__(self, x: torch.Tensor, grad: torch.Tensor, info: StepInfo) -> torch.Tensor:
        ctx = R.Context(info.step, self.rngs, self.am._offset, acts=info.acts, targets=self.targets)
        g = grad
        for reg in self.grad_regs:
            g = reg(g, ctx)
        mean_abs = g.abs().flatten(1).mean(1) if self.grad_regs else info.row_scale
        finite = torch.isfinite(g).flatten(1).all(1) & torch.isfinite(mean_abs)
        if not bool(finite.all()):
            g = torch.where(finite.view(-1, 1, 1, 1), g, torch.zeros_like(g))
        updated = torch.addcmul(x, self.am._rates(g, self.lr, self.rngs, mean_abs).view(-1, 1, 1, 1), g)
        ctx.grad = g
        for reg in self.image_regs:
            updated = reg(updated, ctx)
        return updated


class ImageAM(TargetPlanner):
    """Image-space activation maximisation of classifier units, many rows per batch.

    Args:
        classifier: the network whose units are visualised.
        settings: hyper-parameters, e.g. ``preset("yosinski")``; default :class:`ImageAMSettings`.
        device: "auto" (CUDA when available), "cpu", "cuda", ...
        mean_image: the dataset mean image as RGB 0..1 (3, H, W), for ``init="mean"`` and the
            "normal" start's centre; default the classifier space's per-channel mean colour.
        magnitude: MACO's magnitude template (3, h, w // 2 + 1), e.g. ``dgn.maco.natural_magnitude(images)``;
            default the shipped CIFAR-10 one.

    Example::

        am = ImageAM(load_classifier("caffenet"), preset("yosinski"))
        result = am.synthesize(["fc8:945", "conv5:12"], restarts=2)
        images = am.render(result.codes_last, result.view_boxes)
    """

    def __init__(
        self,
        classifier: Classifier,
        settings: ImageAMSettings | None = None,
        device: str | torch.device | None = "auto",
        mean_image: torch.Tensor | None = None,
        magnitude: torch.Tensor | None = None,
    ) -> None:
        self.settings = settings or ImageAMSettings()
        self.magnitude = magnitude
        self.device = resolve_device(device)
        self.classifier = replace(classifier, module=place(classifier.module, self.device, self.settings.precision))
        self.size: tuple[int, int] = tuple(input_shape(classifier)[1:])
        self.work_space = spaces.CAFFE_BGR_IMAGENET.with_size(self.size)
        # Work-space value + offset = 0..255 pixel value (BGR).
        self._offset = torch.tensor(spaces.IMAGENET_MEAN_BGR_CAFFE, device=self.device).view(1, 3, 1, 1)
        self._mean_given = mean_image is not None
        self.mean_image = self._mean_in_work_space(mean_image)
        self._receptive_fields = ReceptiveFields(self.classifier.module, input_shape(self.classifier))

    def _mean_in_work_space(self, mean_image: torch.Tensor | None) -> torch.Tensor:
        if mean_image is None:
            return torch.zeros(3, *self.size)
        if mean_image.dim() != 3 or mean_image.shape[0] != 3:
            raise DGNError(f"mean_image must be RGB 0..1 of shape (3, H, W), got {tuple(mean_image.shape)}")
        rgb = F.interpolate(mean_image[None].float(), size=self.size, mode="bilinear", align_corners=False,
                            antialias=True)
        return spaces.from_rgb01(rgb, self.work_space)[0]

    # ----- spaces and starts ---------------------------------------------------------------------
    def to_classifier(self, images: torch.Tensor, whole: bool = False) -> torch.Tensor:
        """Work-space images -> the classifier's pixel space (differentiable), resized to its input (a MACO
        canvas whole), or at their own size with ``whole``."""
        target = self.classifier.space.with_size(None) if whole else self.classifier.space
        return spaces.convert(images, self.work_space, target, "resize")

    def from_classifier(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the classifier's pixel space -> the work space."""
        return spaces.convert(images.to(self.device).float(), self.classifier.space, self.work_space)

    def initial_images(self, rows: Sequence[Row]) -> torch.Tensor:
        """Each row's start in the work space: the mean image, plus N(0, init_std) drawn from the row's seed.

        The draw is ``np.random.RandomState(seed).normal(0, std, (3, H, W))`` in BGR order: for CaffeNet,
        Yosinski et al.'s ``mean_plus_rand`` start.
        """
        s = self.settings
        mean = self.mean_image.expand(len(rows), -1, -1, -1)
        if s.init == "mean":
            return mean.clone()
        noise = [np.random.RandomState(r.seed).normal(0, s.init_std, (1, 3, *self.size)) for r in rows]
        return mean + torch.from_numpy(np.concatenate(noise)).float()

    def octave_sizes(self) -> list[tuple[int, int]]:
        """Image size at each octave, smallest first (each ``round(previous / octave_scale)``, as DeepDream)."""
        sizes = [self.size]
        for _ in range(self.settings.octaves - 1):
            h, w = sizes[0]
            scale = self.settings.octave_scale
            sizes.insert(0, (max(1, round(h / scale)), max(1, round(w / scale))))
        return sizes

    @property
    def steps_per_row(self) -> int:
        """Optimisation steps each row takes (times the number of ``auto_lr`` candidates)."""
        return self.settings.steps * max(1, len(self.settings.auto_lr))

    # ----- the optimisation ----------------------------------------------------------------------
    @property
    def canvas_size(self) -> tuple[int, int]:
        """The size of the images a run makes: the input size, or MACO's canvas."""
        k = self.settings.canvas if self.settings.parameterisation == "maco" else 1
        return self.size[0] * k, self.size[1] * k

    def pixels(self) -> Pixels | FourierImages | MacoImages:
        """The parameterisation: work-space images shown at the input size, clamped to 0..255 with ``clip_pixels``;
        or their Fourier coefficients (``parameterisation="fourier"``), or their phase (``"maco"``)."""
        if self.settings.parameterisation == "fourier":
            return FourierImages(self.size, self.work_space, self.settings.decay_power)
        if self.settings.parameterisation == "maco":
            return MacoImages(self.canvas_size, self.work_space.with_size(self.canvas_size), self.magnitude)
        valid = (-self._offset, 255 - self._offset) if self.settings.clip_pixels else None
        return Pixels(self.size, valid)

    def _rates(self, g: torch.Tensor, lr: float, rngs: Sequence[torch.Generator],
               mean_abs: torch.Tensor) -> torch.Tensor:
        """Per-row step sizes multiplying the gradient (``mean_abs``: each row's mean |g|, already computed)."""
        s = self.settings
        flat = g.flatten(1)
        if s.step_rule == "l1":
            rate = lr / mean_abs.clamp_min(1e-30)
        elif s.step_rule == "progress":
            rate = (s.progress / flat.pow(2).sum(1).clamp_min(1e-30)).clamp_max(lr)
        else:
            rate = torch.full((g.shape[0],), float(lr), device=g.device)
        if s.lr_noise is not None:
            rate = rate * torch.tensor(R.uniform(rngs, *s.lr_noise), dtype=rate.dtype, device=rate.device)
        return rate

    def _run(self, rows: Sequence[Row], start: torch.Tensor, lr: float, objective: Callable,
             progress: Callable[[int], None] | None,
             anchor: Objective | None = None) -> tuple[IterateTracker, torch.Tensor]:
        """One run of the engine per octave, carrying the detail found so far onto the next, larger base.

        Returns the tracker and each row's attribution map (see :class:`ImageAMResult`)."""
        s = self.settings
        module = self.classifier.module
        rngs = [torch.Generator().manual_seed(r.seed) for r in rows]
        targets = [r.target for r in rows]
        inputs = s.stage("input")
        if s.parameterisation == "maco":  # the model sees random crops of the canvas, with noise
            inputs = [CropsAndNoise(self.size, s.crop_box), *inputs]
        # oneDNN's convolutions run ~10% faster on channels-last inputs (same values, another layout).
        layout = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format

        def transform(image: torch.Tensor, step: int) -> torch.Tensor:
            ctx = R.Context(step, rngs, self._offset, targets=targets)
            for reg in inputs:
                image = reg(image, ctx)
            return image

        ascend = None
        if s.diversity:
            ascend = as_objective(objective) + diversity_among_restarts(rows, module, s.diversity, s.diversity_layer)
        if anchor is not None:
            ascend = (ascend if ascend is not None else as_objective(objective)) + anchor
        layers = tuple(dict.fromkeys([*objective.layers, *(ascend.layers if ascend is not None else ())]))
        sizes = self.octave_sizes()
        bases = [start]
        for size in reversed(sizes[:-1]):
            bases.insert(0, resize(bases[0], size))
        param = self.pixels()
        x = param.project(bases[0])
        attribution: torch.Tensor | None = None

        def accumulate(grad: torch.Tensor) -> None:
            nonlocal attribution
            step_map = grad.detach().abs().float().mean(1)
            if attribution is not None:  # on an octave's larger base the map so far is resized onto it
                step_map = step_map + resize(attribution[:, None], step_map.shape[-2:])[:, 0]
            attribution = step_map

        def image_with_attribution(x: torch.Tensor) -> torch.Tensor:
            image = param.to_image(x)
            if image.requires_grad:  # a step's gradient passes here on its way to the parameters
                image.register_hook(accumulate)
            return image

        track, step = None, 0
        octave_steps = s.octave_steps()
        for octave, (size, n_steps) in enumerate(zip(sizes, octave_steps)):
            if octave > 0:  # DeepDream: carry the detail found so far onto the next, larger base
                x = bases[octave] + resize(x - bases[octave - 1], size)
            problem = Problem(
                start=x,
                image=image_with_attribution,
                forward=lambda image: forward_to(module, self.to_classifier(image).contiguous(memory_format=layout),
                                                 layers, s.stop_early),
                objective=objective,
                ascend=ascend,
                step=AdamStep(lr) if s.step_rule == "adam" else _ImageStep(self, lr, rngs, targets),
                project=param.project,
                transform=transform if inputs else None,
                iterate=param.iterate,
            )
            last = octave == len(sizes) - 1
            track = optimise(problem, n_steps, s.precision, progress, track, step, evaluate_last=last)
            x, step = track.params, step + n_steps
        if attribution is None:  # no step took a gradient
            attribution = torch.zeros(x.shape[0], *self.canvas_size, device=self.device)
        return track, attribution

    def optimise(
        self,
        rows: Sequence[Row],
        images: torch.Tensor | None = None,
        objective: Callable | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImageAMResult:
        """Optimise the images of ``rows`` as one batch.

        Args:
            rows: the rows (see :meth:`plan`); all run together, so mind the memory.
            images: initial images (B, C, H, W) in the classifier's space; default from each row's seed.
            objective: ``objective(acts, images) -> (B,)`` with a ``layers`` attribute (``images``: the
                un-jittered work-space images); default each row's target unit.
            progress: called after each step with the number of rows it advanced.

        Returns:
            The results; ``codes_last`` / ``codes_best`` are images in the classifier's pixel space.
        """
        s = self.settings
        objective = objective or UnitObjective([r.target for r in rows], s.post_relu, [r.partner for r in rows])
        if s.parameterisation == "maco":
            if images is not None:
                raise DGNError("a maco run starts from random phases; it cannot start from given images")
            start = self.pixels().start([r.seed for r in rows])
        elif s.parameterisation == "fourier":
            fourier = self.pixels()
            start = (fourier.start([r.seed for r in rows]) if images is None
                     else fourier.coefficients(spaces.to_rgb01(self.from_classifier(images), self.work_space)))
        else:
            start = self.initial_images(rows) if images is None else self.from_classifier(images)
        start = start.to(self.device, torch.float32)
        anchor = None
        if s.anchor_weight:
            if images is None:
                raise DGNError("feature accentuation (anchor_weight) needs start images (--init-image)")
            layer = resolve_layer(self.classifier.module, s.anchor_layer)
            with torch.no_grad():
                reference = forward_to(self.classifier.module, self.to_classifier(self.pixels().iterate(start)),
                                       [layer])[layer]
            anchor = FeatureAnchor(layer, reference, s.anchor_weight)
        rates = s.auto_lr or (s.lr,)
        # oneDNN's input gradient of an 11x11/4 first conv costs ~5 forwards of it; cuDNN needs no help.
        fast = self.device.type == "cpu" and s.precision == "fp32"
        with image_gradient_only(self.classifier.module) if fast else nullcontext():
            runs, maps = zip(*[self._run(rows, start, lr, objective, progress, anchor) for lr in rates])
        # auto_lr: per row, the candidate with the highest final activation (the first on ties).
        pick = torch.stack([r.act_end for r in runs]).argmax(0)
        index = torch.arange(len(rows), device=pick.device)

        def chosen(name: str) -> torch.Tensor:
            return torch.stack([getattr(r, name) for r in runs])[pick, index]

        with torch.no_grad():
            last = self.to_classifier(chosen("last"), whole=True).float().cpu()
            best = self.to_classifier(chosen("best"), whole=True).float().cpu()
            contrast = chosen("last").float().flatten(2).std(2).mean(1).cpu()  # work-space units are grey levels
        return ImageAMResult(
            list(rows), last, best,
            chosen("act_start").cpu(), chosen("act_end").cpu(), chosen("act_best").cpu(), chosen("best_step").cpu(),
            [self.view_box(r.target) for r in rows],
            lr=torch.tensor(rates, dtype=torch.float64)[pick.cpu()],
            contrast=contrast,
            attribution=torch.stack(maps)[pick, index].float().cpu(),
        )

    def synthesize(
        self,
        targets: Sequence[str | Target],
        restarts: int = 1,
        seed: int = 0,
        batch_size: int = 16,
        skip: Iterable[str] = (),
        on_chunk: Callable[[RowsResult], None] | None = None,
        progress: Callable[[int], None] | None = None,
        start: torch.Tensor | None = None,
    ) -> ImageAMResult | None:
        """Optimise every (target, restart) row in chunks of ``batch_size`` rows.

        Args:
            targets: e.g. ``["fc8:945", "conv5:12@6,6"]``.
            restarts: rows per target; restart r starts from seed ``seed + r``.
            seed: base seed (initial image and every random choice of the row).
            batch_size: rows per batch (memory vs speed); results do not depend on it.
            skip: row keys (``Row.key``) to leave out, e.g. rows a resumed run already finished.
            on_chunk: called with each finished chunk's results (to write them as they come).
            progress: called after each step with the number of rows it advanced.
            start: start images in the classifier's space (e.g. real images, for feature accentuation): one
                (1, C, H, W) for every row, or one per row of the plan, in its order.

        Returns:
            All rows' results in order, or None when every row was skipped.
        """
        skip = set(skip)
        planned = self.plan(targets, restarts, seed)
        starts = starts_by_row(planned, start)
        rows, batch_size = rows_to_run(planned, skip, batch_size, bool(self.settings.diversity))

        def optimise(chunk: list[Row]) -> ImageAMResult:
            return self.optimise(chunk, images=stack_starts(chunk, starts), progress=progress)

        parts = run_in_chunks(rows, batch_size, optimise, on_chunk)
        return ImageAMResult.concat(parts) if parts else None

    # ----- images --------------------------------------------------------------------------------
    @property
    def output_space(self) -> spaces.PixelSpace:
        """Pixel space of the images :meth:`render` returns: the classifier's."""
        return self.classifier.space

    def view_box(self, target: Target) -> tuple[int, int, int, int]:
        """Box (top, left, h, w) of the image to show: all of it, or a spatial unit's receptive field."""
        h, w = self.canvas_size
        if target.position is None or not self.settings.crop_receptive_field:
            return 0, 0, h, w
        k = h // self.size[0]
        top, left, rh, rw = self._receptive_fields.get(target.layer, target.position)
        return top * k, left * k, rh * k, rw * k

    def render(self, codes: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]]) -> list[torch.Tensor]:
        """The images (already in the classifier's space), each cropped to its box."""
        return [image.float().cpu()[:, t : t + h, left : left + w] for image, (t, left, h, w) in zip(codes, boxes)]

    @torch.no_grad()
    def activations(self, images: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
        """Each row's objective for images (B, C, H, W) in the classifier's space (e.g. to re-check saved ones)."""
        objective = UnitObjective([r.target for r in rows], self.settings.post_relu, [r.partner for r in rows])
        images = spaces.fit(images.to(self.device).float(), self.size, "resize")  # a MACO canvas: the whole of it
        acts = forward_to(self.classifier.module, images, objective.layers)
        return objective(acts).float().cpu()

    def describe(self) -> dict:
        """The configuration, for a manifest."""
        mean = "per-channel mean of the classifier's space"
        if self._mean_given:
            mean = "given image, sha256 " + _sha256(self.mean_image)
        return {
            "method": "image-am",
            "preset": self.settings.name,
            "classifier": model_record(self.classifier),
            "work_space": f"{self.work_space.name} (0..255, BGR minus mean) at {self.size[0]}x{self.size[1]}",
            "mean_image": mean,
            "settings": self.settings.describe(),
            "device": str(self.device),
        }


def _sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def attribution_map(attribution: torch.Tensor, percentile: float = 80.0) -> np.ndarray:
    """One row's attribution map (H, W) as an HxW uint8 opacity: values above the ``percentile``-th are
    clipped to it, then the map is divided by its maximum (horama's ``plot_maco`` shows MACO's map so)."""
    a = attribution.float().cpu()
    top = torch.quantile(a.flatten(), percentile / 100).clamp_min(1e-30)
    return (a.clamp(max=float(top)) / top * 255).round().to(torch.uint8).numpy()


def write_attribution(out_dir: str | Path, part: ImageAMResult, method: ImageAM, display: str = "act_max") -> list[str]:
    """Per row: ``attribution/<row>.png`` (the attribution map as grey levels) and ``attribution/<row>_rgba.png``
    (the row's final image with the map as its opacity, MACO's transparency picture), both cropped to the
    row's view box. Returns the files written, relative to ``out_dir``."""
    from dgn.render import save_png, to_uint8

    out, written = Path(out_dir), []
    images = method.render(part.codes_last, part.view_boxes)
    for i, row in enumerate(part.rows):
        top, left, h, w = part.view_boxes[i]
        opacity = attribution_map(part.attribution[i, top : top + h, left : left + w])
        rgba = np.concatenate([to_uint8(images[i], method.output_space, display), opacity[..., None]], axis=2)
        for name, array in ((f"attribution/{row.slug}.png", opacity), (f"attribution/{row.slug}_rgba.png", rgba)):
            save_png(out / name, array)
            written.append(name)
    return written
