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

Named presets (:data:`PRESETS`) reproduce the sources; see :func:`preset`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from dgn import regularisers as R
from dgn import spaces
from dgn.engine import AdamStep, IterateTracker, Problem, StepInfo, optimise, resolve_device
from dgn.errors import PRECISIONS, DGNError, check_at_least, check_choice, check_weight
from dgn.fourier import FourierImages
from dgn.image_grad import image_gradient_only
from dgn.layers import forward_to, resolve_layer
from dgn.maco import CropsAndNoise, MacoImages
from dgn.models import Classifier, input_shape, model_record
from dgn.objectives import FeatureAnchor, Objective, UnitObjective, as_objective
from dgn.params import Pixels, resize
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

STEP_RULES = ("l1", "raw", "progress", "adam")
INITS = ("normal", "mean")
PARAMETERISATIONS = ("pixels", "fourier", "maco")


@dataclass(frozen=True)
class ImageAMSettings:
    """Hyper-parameters of image-space AM (defaults: plain normalised gradient ascent from N(0, 1)).

    Attributes:
        name: the preset's name ("custom" otherwise), recorded in the manifest.
        steps: iterations per row (split evenly over the octaves, the remainder to the last).
        step_rule: "l1" (``x += lr * g / mean|g|``, DeepDream/Wang/Garon), "raw" (``x += lr * g``,
            Yosinski's constant policy) or "progress" (``x += min(lr, progress / |g|^2) * g``,
            Yosinski's progress policy: a predicted activation gain of ``progress`` per step).
        lr: the learning rate (the maximum one for "progress").
        progress: desired activation gain per step for "progress".
        lr_noise: multiply each row's step by a draw from U(low, high) every step (Garon: 0.7..1.7).
        auto_lr: candidate learning rates; when given, every row runs once per candidate and keeps the
            run with the highest final activation (Wang et al., supplement section 2).
        init: "normal" (mean image + N(0, init_std) in 0..255 units) or "mean" (the mean image).
        init_std: standard deviation of the "normal" start.
        clip_pixels: clamp pixels to the valid range (0..255 after adding the mean) after each step.
        regularisers: the composable steps, applied in order within their stage.
        octaves: number of image scales (DeepDream); 1 optimises at the input size only.
        octave_scale: size ratio between consecutive octaves.
        post_relu: maximise the unit after its ReLU (default: before, as the core).
        crop_receptive_field: crop saved images of spatial units to the unit's receptive field.
        stop_early: stop the classifier's forward pass after the deepest target layer.
        precision: "fp32" or "bf16" (autocast).
        diversity, diversity_layer: Lucid's diversity term among each target's restarts, as
            ``dgn.synthesis.ActMaxSettings`` (0: off).
        parameterisation: "pixels" (the image itself) or "fourier" (Olah et al. 2017: 1/f-scaled Fourier
            coefficients of decorrelated colour channels through a sigmoid; see ``dgn.fourier``). A Fourier
            run starts from a random spectrum (``init`` is for pixels), in one octave, and takes input-stage
            regularisers only (the transformation robustness stack). "maco" (Fel et al. 2023): a fixed natural
            magnitude spectrum and an optimised phase (``dgn.maco``), on a canvas ``canvas`` times the input side
            seen through random crops with noise; its images are the whole canvas.
        canvas: MACO's canvas side, in input sides.
        crop_box: (low, high) side of MACO's random crops, as a fraction of the canvas side.
        decay_power: the Fourier parameterisation's 1/f exponent (1: Lucid; 1.5: feature accentuation).
        anchor_layer, anchor_weight: feature accentuation's regulariser (Hamblin et al. 2024): each row also
            ascends minus ``anchor_weight`` times the mean squared difference between its features at
            ``anchor_layer`` and those of the image it started from (a run given start images; 0: off).
    """

    name: str = "custom"
    steps: int = 200
    step_rule: str = "l1"
    lr: float = 1.5
    progress: float = 2.0
    lr_noise: tuple[float, float] | None = None
    auto_lr: tuple[float, ...] = ()
    init: str = "normal"
    init_std: float = 1.0
    clip_pixels: bool = False
    regularisers: tuple[R.Regulariser, ...] = ()
    octaves: int = 1
    octave_scale: float = 1.4
    post_relu: bool = False
    crop_receptive_field: bool = True
    stop_early: bool = True
    precision: str = "fp32"
    diversity: float = 0.0
    diversity_layer: str | None = None
    parameterisation: str = "pixels"
    canvas: int = 1
    crop_box: tuple[float, float] = (0.8, 1.0)
    decay_power: float = 1.0
    anchor_layer: str | None = None
    anchor_weight: float = 0.0

    def __post_init__(self) -> None:
        check_at_least("steps", self.steps, 1)
        check_weight("diversity", self.diversity)
        check_choice("parameterisation", self.parameterisation, PARAMETERISATIONS)
        check_at_least("canvas", self.canvas, 1)
        check_weight("anchor_weight", self.anchor_weight)
        if self.anchor_weight and not self.anchor_layer:
            raise DGNError("anchor_weight needs anchor_layer, the layer whose features the start image keeps")
        if not 0 < self.crop_box[0] <= self.crop_box[1]:
            raise DGNError(f"crop_box must satisfy 0 < low <= high, got {self.crop_box}")
        if self.step_rule == "adam" or self.parameterisation != "pixels":
            others = [R.describe(r)["kind"] for r in self.regularisers if r.stage != "input"]
            if others or self.lr_noise is not None:
                raise DGNError(f"the adam step rule and the fourier parameterisation take input-stage regularisers "
                               f"only (jitter, scale, rotate), not {', '.join(others) or 'lr_noise'}")
        if self.parameterisation != "pixels" and self.octaves != 1:
            raise DGNError(f"the {self.parameterisation} parameterisation runs in one octave, got {self.octaves}")
        check_choice("step rule", self.step_rule, STEP_RULES)
        check_choice("init", self.init, INITS)
        check_choice("precision", self.precision, PRECISIONS)
        if not self.lr > 0 or any(not c > 0 for c in self.auto_lr):
            raise DGNError(f"learning rates must be > 0, got lr {self.lr}, auto_lr {self.auto_lr}")
        if self.octaves < 1 or self.octave_scale < 1 or self.steps < self.octaves:
            raise DGNError(
                f"need octaves >= 1, octave_scale >= 1 and at least one step per octave, "
                f"got {self.octaves} octaves x {self.octave_scale} with {self.steps} steps"
            )
        for reg in self.regularisers:
            if not isinstance(reg, tuple(R.KINDS.values())):
                raise DGNError(f"not a regulariser: {reg!r}; valid kinds: {', '.join(R.KINDS)}")

    def stage(self, name: str) -> list[R.Regulariser]:
        """The regularisers of one stage ("input", "grad" or "image"), in order."""
        return [r for r in self.regularisers if r.stage == name]

    def octave_steps(self) -> list[int]:
        """Steps spent at each octave, smallest scale first."""
        per, extra = divmod(self.steps, self.octaves)
        return [per] * (self.octaves - 1) + [per + extra]

    def describe(self) -> dict:
        """JSON-ready settings, each regulariser as ``{"kind": ..., **parameters}``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "regularisers"}
        out["regularisers"] = [R.describe(r) for r in self.regularisers]
        return _json_ready(out)


def _json_ready(value):
    """Tuples to lists, recursively (so a described configuration compares equal to its reloaded JSON)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


# ----- presets ---------------------------------------------------------------------------------------
def _yosinski(number: int, decay: float, blur: float, norm_pct: float, contrib_pct: float, steps: int,
              rule: str, lr: float) -> ImageAMSettings:
    """One of the four settings of Yosinski et al. 2015, Table 1, in the order their code applies them."""
    regs: list[R.Regulariser] = []
    if decay:
        regs.append(R.L2Decay(decay))
    if blur:
        regs.append(R.GaussianBlur(sigma=(blur, blur), every=4))
    if norm_pct:
        regs.append(R.ClipSmallNorm(percentile=norm_pct))
    if contrib_pct:
        regs.append(R.ClipSmallContribution(percentile=contrib_pct))
    return ImageAMSettings(name=f"yosinski-{number}", steps=steps, step_rule=rule, lr=lr, progress=2.0,
                           init="normal", init_std=10.0, clip_pixels=True, regularisers=tuple(regs))


PRESETS: dict[str, ImageAMSettings] = {
    # Simonyan et al. 2014: L2-regularised class score from the zero (mean) image. Neither lambda nor the
    # step size is published; ours: normalised steps of 1 grey level and decay 0.01 (Garon's value).
    "simonyan": ImageAMSettings(name="simonyan", steps=200, step_rule="l1", lr=1.0, init="mean",
                                regularisers=(R.L2Decay(0.01),)),
    # Yosinski et al. 2015, Table 1, as the authors' optimize_image.py flags give it
    # (deep-visualization-toolbox doc/running-optimize-image.md): decay, blur radius every 4 steps,
    # small-norm percentile, small-contribution percentile, iterations, learning-rate policy.
    "yosinski-1": _yosinski(1, 0.0, 0.5, 50, 0, 500, "progress", 100.0),
    "yosinski-2": _yosinski(2, 0.3, 0.0, 20, 0, 750, "raw", 100.0),
    "yosinski-3": _yosinski(3, 1e-4, 1.0, 0, 0, 1000, "raw", 100.0),
    "yosinski-4": _yosinski(4, 0.0, 0.5, 0, 90, 1000, "progress", 1e8),
    # DeepDream (google/deepdream dream.ipynb): jitter 32, 4 octaves x 1.4, 10 steps each, step 1.5, clip.
    "deepdream": ImageAMSettings(name="deepdream", steps=40, step_rule="l1", lr=1.5, init="normal", init_std=1.0,
                                 clip_pixels=True, regularisers=(R.Jitter(32, reference=224),),
                                 octaves=4, octave_scale=1.4),
    # Wang et al. (seed 000 and happynear/DeepVisualization Inceptionism_big.m): 1500 steps of 1.5 / mean|g|,
    # N(0, 1) start, random translation (their 300 px canvas around a 224 input: +-38 px) and scale
    # 0.8..1.2, weight decay 0.01 (VGG), blur/deblur every 10 steps. The auto-lr candidates are ours.
    "wang": ImageAMSettings(name="wang", steps=1500, step_rule="l1", lr=1.5, auto_lr=(0.75, 1.5, 3.0, 6.0),
                            init="normal", init_std=1.0,
                            regularisers=(R.Jitter(38, reference=224), R.RandomScale((0.8, 1.2), "bilinear"),
                                          R.L2Decay(0.01), R.BlurDeblur())),
    # Garon et al. (seed 001 and MathGaron/neural-network-visualization--Torch ImageOptimization.py):
    # jitter 40, gradient inverted when the softmax saturates, gradient blurred 3..10 times with a kernel
    # of 3, 7 or 9 taps, step U(0.7, 1.7) / mean|g|, L2 decay 0.01, pixel-norm clip at 2, 4 octaves x 1.7
    # of 100 steps.
    "garon": ImageAMSettings(name="garon", steps=400, step_rule="l1", lr=1.0, lr_noise=(0.7, 1.7),
                             init="normal", init_std=1.0,
                             regularisers=(R.Jitter(40, reference=224), R.InvertSaturated(0.9999),
                                           R.GaussianBlur(sigma=(0.0, 0.0), sizes=(3, 7, 9), repeats=(3, 10),
                                                          on="grad"),
                                           R.L2Decay(0.01), R.ClipSmallNorm(threshold=2.0)),
                             octaves=4, octave_scale=1.7),
    # Olah et al. 2017 (Distill "Feature Visualization"; Lucid's render_vis defaults): the decorrelated Fourier
    # parameterisation, Adam at 0.05 for 512 steps, and its transformation robustness stack: jitter 8,
    # scale 0.9..1.1, rotate -10..10 degrees, jitter 4 (pixels of a 224 input; Lucid draws scales and angles from
    # lists, we draw uniformly; Lucid first pads by 12 px, our jitter wraps around instead).
    "fourier": ImageAMSettings(name="fourier", steps=512, step_rule="adam", lr=0.05, parameterisation="fourier",
                               regularisers=(R.Jitter(8, reference=224), R.RandomScale((0.9, 1.1)),
                                             R.RandomRotate((-10.0, 10.0)), R.Jitter(4, reference=224))),
    # Fel et al. 2023 (MACO; their horama package's defaults): the phase of a spectrum whose magnitude is that
    # of natural images, seen through random crops centred at 0.5 + 0.15 N(0, 1) with Gaussian and uniform
    # noise. horama optimises a 1280 px canvas for a 224 px model (crops of 20-25% of it, i.e. 1.1-1.4 input
    # sides) with NAdam at 1.0 for 1000 steps; a whole canvas then holds many views, and seen whole at the
    # input size it no longer drives the unit. Our preset keeps one input-sized image (canvas 1, crops of
    # 80-100% of it), Adam at 0.2, 512 steps; ``canvas=5, crop_box=(0.2, 0.25)`` is horama's geometry.
    "maco": ImageAMSettings(name="maco", steps=512, step_rule="adam", lr=0.2, parameterisation="maco"),
    # Hamblin et al. 2024 (feature accentuation; horama's accentuation): from a real image (--init-image), its
    # exact Fourier coefficients with a 1/f^1.5 spectrum, the fourier robustness stack, and a regulariser that
    # keeps the image's own features at a lower layer (the paper's; horama keeps its pixels). Ours: conv2, weight
    # 300 on the relative squared feature difference, Adam 0.05 x 200 steps. Measured on the CIFAR world (8
    # ships, target "cat"): the cat logit rises from -3.7 to 25 while the judge still sees 5 of 8 ships and the
    # image moves 0.17 RMS (RGB 0..1), against 82, 0 ships and 0.41 without the regulariser.
    "accentuate": ImageAMSettings(name="accentuate", steps=200, step_rule="adam", lr=0.05, parameterisation="fourier",
                                  decay_power=1.5, anchor_layer="conv2", anchor_weight=300.0,
                                  regularisers=(R.Jitter(8, reference=224), R.RandomScale((0.9, 1.1)),
                                                R.RandomRotate((-10.0, 10.0)), R.Jitter(4, reference=224))),
}

# "yosinski" alone: the setting the authors used for most images of the paper.
PRESET_ALIASES: dict[str, str] = {"yosinski": "yosinski-3"}


def preset(name: str) -> ImageAMSettings:
    """The settings of a named preset (see :data:`PRESETS`; ``yosinski`` means ``yosinski-3``).

    Raises:
        DGNError: unknown name, listing the valid ones.
    """
    key = PRESET_ALIASES.get(name, name)
    if key not in PRESETS:
        valid = ", ".join([*PRESETS, *PRESET_ALIASES])
        raise DGNError(f"unknown preset {name!r}; valid: {valid}")
    return PRESETS[key]


# ----- the method ------------------------------------------------------------------------------------
# A final image whose contrast (per-channel standard deviation over its pixels, averaged over channels, in
# grey levels 0..255) is below this is flat: e.g. a preset run far below its published step count. Measured on
# the CIFAR world at 200 steps: yosinski-1..4 0.5-2.5, every other preset 30-60.
FLAT = 4.0


@dataclass
class ImageAMResult(RowsResult):
    """:class:`RowsResult` whose codes are images (B, C, H, W) in the classifier's space, plus each row's
    learning rate (the chosen one under ``auto_lr``) and its final image's contrast (see :data:`FLAT`)."""

    lr: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    contrast: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def row_extra(self, index: int) -> dict:
        extra = {"lr": float(self.lr[index])} if self.lr.numel() > index else {}
        if self.contrast.numel() > index:
            extra["contrast"] = round(float(self.contrast[index]), 4)
        return extra

    @staticmethod
    def concat(parts: Sequence[RowsResult]) -> ImageAMResult:
        base = RowsResult.concat(parts)
        return ImageAMResult(**vars(base), lr=torch.cat([getattr(p, "lr", torch.empty(0)) for p in parts]),
                             contrast=torch.cat([getattr(p, "contrast", torch.empty(0)) for p in parts]))


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
        self.classifier = classifier.to(self.device)
        self.classifier.module.eval()
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
             progress: Callable[[int], None] | None, anchor: Objective | None = None) -> IterateTracker:
        """One run of the engine per octave, carrying the detail found so far onto the next, larger base."""
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
        track, step = None, 0
        octave_steps = s.octave_steps()
        for octave, (size, n_steps) in enumerate(zip(sizes, octave_steps)):
            if octave > 0:  # DeepDream: carry the detail found so far onto the next, larger base
                x = bases[octave] + resize(x - bases[octave - 1], size)
            problem = Problem(
                start=x,
                image=param.to_image,
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
        return track

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
            runs = [self._run(rows, start, lr, objective, progress, anchor) for lr in rates]
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
