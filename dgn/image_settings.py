"""Image-space AM's settings and the named presets that reproduce the sources (values only).

:class:`ImageAMSettings` configures :class:`dgn.baseline.ImageAM`; :data:`PRESETS` hold the published settings
of Simonyan et al., Yosinski et al., DeepDream, Wang et al., Garon et al., Olah et al. (fourier), Fel et al.
(maco) and Hamblin et al. (accentuate); :func:`preset` looks one up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from dgn import regularisers as R
from dgn.errors import PRECISIONS, DGNError, check_at_least, check_choice, check_weight

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
        precision: "fp32" or "bf16" (autocast on a bf16 copy of the weights; see ``dgn.placement``).
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
