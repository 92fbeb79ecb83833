"""Regularisers of image-space activation maximisation: small composable steps (used by ``dgn.baseline``).

Each regulariser is a frozen dataclass with its own parameters and a ``stage`` that says where it
acts in one optimisation step:

- ``"input"`` (:class:`Jitter`, :class:`RandomScale`): a differentiable transform of the image before
  the classifier sees it. The gradient flows back through it, so it arrives in image coordinates
  (a jitter is undone exactly: a roll is a permutation of pixels).
- ``"grad"`` (:class:`GaussianBlur` with ``on="grad"``, :class:`InvertSaturated`): changes the
  gradient before the update.
- ``"image"`` (:class:`L2Decay`, :class:`GaussianBlur`, :class:`BlurDeblur`, :class:`ClipSmallNorm`,
  :class:`ClipSmallContribution`): changes the image after the update.

Every regulariser is called as ``reg(x, ctx) -> x`` on a batch (B, 3, H, W). Random choices (shifts,
scales, kernels) are drawn from ``ctx.rngs[i]``, row i's own generator, so a row's result does not
depend on the other rows of its batch.

Images are in the *work space* of ``dgn.baseline``: Caffe units (0..255 minus the per-channel mean),
the units in which the sources state their parameters (pixel-norm thresholds, blur radii in pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from dgn.errors import DGNError
from dgn.targets import Target


@dataclass
class Context:
    """What a regulariser may need besides the image.

    Attributes:
        step: the global step index (0-based).
        rngs: one generator per row; draw every random choice of row i from ``rngs[i]``.
        offset: (1, 3, 1, 1) values that turn work-space pixels into 0..255 pixel values.
        grad: the gradient of this step (set before the image stage).
        acts: the captured layer outputs of this step's forward pass.
        targets: one target per row.
    """

    step: int
    rngs: list[torch.Generator]
    offset: torch.Tensor
    grad: torch.Tensor | None = None
    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)


# ----- per-row random draws -----------------------------------------------------------------------
def uniform(rngs: Sequence[torch.Generator], low: float, high: float) -> list[float]:
    """One draw from U(low, high) per row, each from the row's own generator."""
    return [low + (high - low) * float(torch.rand(1, generator=g, dtype=torch.float64)) for g in rngs]


def randint(rngs: Sequence[torch.Generator], low: int, high: int) -> list[int]:
    """One integer in [low, high] (inclusive) per row."""
    return [int(torch.randint(low, high + 1, (1,), generator=g)) for g in rngs]


def choice(rngs: Sequence[torch.Generator], options: Sequence) -> list:
    """One element of ``options`` per row."""
    return [options[i] for i in randint(rngs, 0, len(options) - 1)]


# ----- Gaussian kernels and separable per-row filtering ---------------------------------------------
# OpenCV's getGaussianKernel uses these fixed kernels for sizes 1..7 when sigma <= 0.
_OPENCV_SMALL = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def scipy_size(sigma: float, truncate: float = 4.0) -> int:
    """Taps of ``scipy.ndimage.gaussian_filter``'s kernel: radius ``int(truncate * sigma + 0.5)``."""
    return 2 * int(truncate * sigma + 0.5) + 1


def opencv_sigma(size: int) -> float:
    """The sigma OpenCV derives from a kernel size when none is given."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_kernel1d(sigma: float, size: int, support: int | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``size`` taps, centred in ``support`` taps (zeros outside).

    Args:
        sigma: standard deviation in pixels; <= 0 means OpenCV's kernel for ``size`` (its fixed
            tables for sizes up to 7, else sigma from :func:`opencv_sigma`).
        size: odd number of taps.
        support: odd total length (>= size), so rows with different sizes share one filter shape.

    Returns:
        (support,) float64 weights summing to one.
    """
    support = size if support is None else support
    if size < 1 or size % 2 == 0 or support < size or support % 2 == 0:
        raise DGNError(f"kernel size must be odd and fit its support, got size {size}, support {support}")
    if sigma <= 0 and size in _OPENCV_SMALL:
        taps = torch.tensor(_OPENCV_SMALL[size], dtype=torch.float64)
    else:
        s = sigma if sigma > 0 else opencv_sigma(size)
        t = torch.arange(size, dtype=torch.float64) - size // 2
        taps = torch.exp(-(t**2) / (2 * s * s))
    taps = taps / taps.sum()
    pad = (support - size) // 2
    return F.pad(taps, (pad, pad))


def _pad_mode(pad: int, length: int) -> str:
    # Reflection (OpenCV's default border) needs the pad to be shorter than the image side.
    return "reflect" if pad < length else "replicate"


def blur_rows(x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """Separable filtering with one kernel pair per row, same-size output, reflected borders.

    Args:
        x: (B, C, H, W).
        ky, kx: (B, Ky) and (B, Kx) 1-D kernels (odd lengths) for the vertical and horizontal pass.
    """
    b, c, h, w = x.shape
    ky = ky.to(x).repeat_interleave(c, 0)
    kx = kx.to(x).repeat_interleave(c, 0)
    py, px = ky.shape[1] // 2, kx.shape[1] // 2
    y = x.reshape(1, b * c, h, w)
    if py:
        y = F.pad(y, (0, 0, py, py), mode=_pad_mode(py, h))
        y = F.conv2d(y, ky.view(b * c, 1, -1, 1), groups=b * c)
    if px:
        y = F.pad(y, (px, px, 0, 0), mode=_pad_mode(px, w))
        y = F.conv2d(y, kx.view(b * c, 1, 1, -1), groups=b * c)
    return y.view(b, c, h, w)


def richardson_lucy(observed: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Richardson-Lucy deconvolution of non-negative images by a separable per-row kernel.

    Plain RL (MATLAB's ``deconvlucy`` adds damping and acceleration); the kernels are symmetric, so
    the adjoint filter is the filter itself.
    """
    estimate = observed
    for _ in range(iterations):
        ratio = observed / blur_rows(estimate, ky, kx).clamp_min(1e-6)
        estimate = estimate * blur_rows(ratio, ky, kx)
    return estimate


# ----- jitter ---------------------------------------------------------------------------------------
def roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``torch.roll`` by a different (dy, dx) per row: ``out[b, :, i, j] = x[b, :, i - dy, j - dx]`` (circular).

    Args:
        x: (B, C, H, W).
        shifts: (B, 2) integer shifts; ``roll_rows(roll_rows(x, s), -s)`` is ``x`` exactly.
    """
    b, c, h, w = x.shape
    shifts = shifts.to(x.device, torch.long)
    ys = (torch.arange(h, device=x.device)[None, :] - shifts[:, :1]) % h
    xs = (torch.arange(w, device=x.device)[None, :] - shifts[:, 1:]) % w
    x = x.gather(2, ys[:, None, :, None].expand(b, c, h, w))
    return x.gather(3, xs[:, None, None, :].expand(b, c, h, w))


@dataclass(frozen=True)
class Jitter:
    """Random circular shift of the input, new each step (DeepDream's ``np.roll``).

    Sources: DeepDream (jitter 32), Garon et al. (seed 001, jitter 40), Wang et al. (random crops of a
    300 px canvas around a 224 input: +-38). Those are pixels of ~224 px inputs; with ``reference``
    the range scales with the input side, so a preset means the same on a 32 px CIFAR net.

    Attributes:
        pixels: maximum shift per axis (shifts are uniform in [-pixels, pixels]).
        reference: the input side ``pixels`` refers to; None: ``pixels`` are absolute.
    """

    pixels: int = 32
    reference: int | None = None

    stage = "input"

    def limits(self, size: tuple[int, int]) -> tuple[int, int]:
        """Maximum (dy, dx) for an image of ``size`` (H, W)."""
        if self.reference is None:
            return self.pixels, self.pixels
        return round(self.pixels * size[0] / self.reference), round(self.pixels * size[1] / self.reference)

    def shifts(self, rngs: Sequence[torch.Generator], size: tuple[int, int]) -> torch.Tensor:
        """(B, 2) shifts for images of ``size``, each row's from its own generator."""
        my, mx = self.limits(size)
        return torch.tensor(
            [[int(torch.randint(-my, my + 1, (1,), generator=g)), int(torch.randint(-mx, mx + 1, (1,), generator=g))]
             for g in rngs],
            dtype=torch.long,
        )

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return roll_rows(x, self.shifts(ctx.rngs, tuple(x.shape[-2:])))


@dataclass(frozen=True)
class RandomScale:
    """Random zoom of the input about its centre: the classifier sees the central ``s`` fraction, resized.

    Source: Wang et al. (seed 000): scales in [0.8, 1.2]; supplement section 3 compares "nearest"
    (gradient shared between the pixels that map to one location, no neighbour sharing) with
    "bilinear" resizing. Beyond the border (s > 1) the image is the mean colour (zero).

    Attributes:
        scale: (low, high) of the uniform draw, per row and step.
        mode: "bilinear" or "nearest".
    """

    scale: tuple[float, float] = (0.8, 1.2)
    mode: str = "bilinear"

    stage = "input"

    def __post_init__(self) -> None:
        if self.mode not in ("bilinear", "nearest"):
            raise DGNError(f"unknown resize mode {self.mode!r}; valid: bilinear, nearest")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise DGNError(f"scale range must satisfy 0 < low <= high, got {self.scale}")

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        s = torch.tensor(uniform(ctx.rngs, *self.scale), dtype=x.dtype, device=x.device)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = s
        theta[:, 1, 1] = s
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class RandomRotate:
    """Random rotation of the input about its centre by a uniform angle in ``degrees``, per row and step.

    Source: Olah et al. 2017 (Lucid's ``random_rotate``, angles -10..10 degrees). Outside the image the
    input is the mean colour (zero).
    """

    degrees: tuple[float, float] = (-10.0, 10.0)

    stage = "input"

    def __post_init__(self) -> None:
        if not self.degrees[0] <= self.degrees[1]:
            raise DGNError(f"rotation range must satisfy low <= high, got {self.degrees}")

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        angle = torch.tensor(uniform(ctx.rngs, *self.degrees), dtype=x.dtype, device=x.device) * (math.pi / 180)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ----- gradient and image steps ---------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianBlur:
    """Gaussian blur of the image (or of the gradient) every ``every`` steps, with a random kernel per row.

    Sources: Yosinski et al. 2015 (seed 004): blur radius 0.5 or 1.0 every 4 steps, scipy's
    ``gaussian_filter`` (kernel radius ``int(4 sigma + 0.5)``); Garon et al. (seed 001): blur of the
    gradient with a kernel size chosen at random from {3, 7, 9} each step (OpenCV, sigma from the
    size), applied 3..10 times.

    Attributes:
        sigma: (low, high) of a uniform draw per row; (0, 0) takes the sigma from the kernel size as
            OpenCV does (then ``sizes`` is required).
        sizes: odd kernel sides to choose from per row; empty: scipy's size for the sigma.
        repeats: (low, high) of how many times the blur is applied, drawn per row.
        every: blur at steps 0, every, 2 * every, ...
        on: "image" (after the update) or "grad" (before it).
    """

    sigma: tuple[float, float] = (1.0, 1.0)
    sizes: tuple[int, ...] = ()
    repeats: tuple[int, int] = (1, 1)
    every: int = 1
    on: str = "image"

    def __post_init__(self) -> None:
        if self.on not in ("image", "grad"):
            raise DGNError(f"blur 'on' must be 'image' or 'grad', got {self.on!r}")
        if self.every < 1 or not 1 <= self.repeats[0] <= self.repeats[1]:
            raise DGNError(
                f"blur needs every >= 1 and 1 <= repeats low <= high, got every {self.every}, repeats {self.repeats}"
            )
        if self.sigma[0] > self.sigma[1] or self.sigma[0] < 0:
            raise DGNError(f"blur sigma range must satisfy 0 <= low <= high, got {self.sigma}")
        if not self.sizes and self.sigma[1] <= 0:
            raise DGNError("a blur without sigma needs kernel sizes (OpenCV derives sigma from the size)")
        if any(s < 1 or s % 2 == 0 for s in self.sizes):
            raise DGNError(f"blur kernel sizes must be odd, got {self.sizes}")

    @property
    def stage(self) -> str:
        return self.on

    def kernels(self, rngs: Sequence[torch.Generator]) -> torch.Tensor:
        """(B, K) 1-D kernels, one per row, on a common support of K taps."""
        sigmas = uniform(rngs, *self.sigma) if self.sigma[1] > 0 else [0.0] * len(rngs)
        if self.sizes:
            sizes = choice(rngs, self.sizes)
            support = max(self.sizes)
        else:
            sizes = [scipy_size(s) for s in sigmas]
            support = scipy_size(self.sigma[1])
        return torch.stack([gaussian_kernel1d(s, n, support) for s, n in zip(sigmas, sizes)])

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        if ctx.step % self.every:
            return x
        k = self.kernels(ctx.rngs)
        repeats = torch.tensor(randint(ctx.rngs, *self.repeats), device=x.device)
        for r in range(int(repeats.max())):
            x = torch.where((repeats > r).view(-1, 1, 1, 1), blur_rows(x, k, k), x)
        return x


@dataclass(frozen=True)
class BlurDeblur:
    """Alternate image blurring and deblurring (Wang et al., seed 000, and their code).

    Every ``period`` steps the image is blurred (at phase 0) with a Gaussian of random height
    (``sizes``) and fixed ``width``; at phase ``deblur_at`` it is deblurred by Richardson-Lucy with a
    fresh random kernel of ``deblur_ratio`` times the sigma. The sigma decays by ``sigma_decay``
    per period from ``sigma_start`` to a floor ``sigma_end``. Deblurring works on 0..255 pixel
    values, clamped at 0 (RL needs non-negative images). The source's kernel heights are 5..10; only
    odd sizes are used here, as an even kernel shifts the image by half a pixel.
    """

    period: int = 10
    deblur_at: int = 5
    sigma_start: float = 1.2
    sigma_end: float = 0.5
    sigma_decay: float = 0.99
    deblur_ratio: float = 0.8
    sizes: tuple[int, ...] = (5, 7, 9)
    width: int = 7
    iterations: int = 10

    stage = "image"

    def __post_init__(self) -> None:
        if not 0 <= self.deblur_at < self.period:
            raise DGNError(f"deblur_at must be in [0, period), got {self.deblur_at} with period {self.period}")
        if any(s % 2 == 0 for s in (*self.sizes, self.width)):
            raise DGNError(f"blur/deblur kernel sizes must be odd, got {self.sizes} x {self.width}")

    def sigma(self, step: int) -> float:
        """The blur sigma in force at ``step`` (the source decays it once per period, before its first use)."""
        return max(self.sigma_end, self.sigma_start * self.sigma_decay ** (step // self.period + 1))

    def _kernels(self, rngs: Sequence[torch.Generator], sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        support = max(self.sizes)
        ky = torch.stack([gaussian_kernel1d(sigma, n, support) for n in choice(rngs, self.sizes)])
        kx = gaussian_kernel1d(sigma, self.width).expand(len(rngs), -1)
        return ky, kx

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        phase = ctx.step % self.period
        if phase == 0:
            return blur_rows(x, *self._kernels(ctx.rngs, self.sigma(ctx.step)))
        if phase == self.deblur_at:
            ky, kx = self._kernels(ctx.rngs, self.sigma(ctx.step) * self.deblur_ratio)
            pixels = (x + ctx.offset).clamp_min(0)
            return richardson_lucy(pixels, ky, kx, self.iterations) - ctx.offset
        return x


@dataclass(frozen=True)
class L2Decay:
    """``x <- (1 - decay) x`` after each update: the L2 prior ``lambda ||x||^2`` under gradient ascent.

    Sources: Simonyan et al. 2014 (via seed 001, Garon: decay 0.01); Yosinski et al. (decay 0, 0.3,
    1e-4); Wang et al. (seed 000: weight decay 0.01 for VGG-like nets, whose pixels otherwise explode).
    """

    decay: float = 0.01

    stage = "image"

    def __post_init__(self) -> None:
        if not 0 <= self.decay < 1:
            raise DGNError(f"L2 decay must be in [0, 1), got {self.decay}")

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return x * (1 - self.decay)


def _row_percentile(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """Per-row percentile of (B, N) values with numpy's default (linear) interpolation, as (B, 1)."""
    return torch.quantile(values.double(), percentile / 100, dim=1, keepdim=True).to(values.dtype)


@dataclass(frozen=True)
class ClipSmallNorm:
    """Set to zero the pixels whose norm over the colour channels is small.

    Either below the ``percentile`` of the row's pixel norms (Yosinski et al., theta_n_pct: 50 or 20)
    or below an absolute ``threshold`` in 0..255 units (Garon et al., seed 001: 2). Zero is the mean
    colour.
    """

    percentile: float | None = None
    threshold: float | None = None

    stage = "image"

    def __post_init__(self) -> None:
        if (self.percentile is None) == (self.threshold is None):
            raise DGNError("ClipSmallNorm needs exactly one of percentile and threshold")

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        norms = x.norm(dim=1)  # (B, H, W)
        if self.percentile is not None:
            cut = _row_percentile(norms.flatten(1), self.percentile).view(-1, 1, 1)
        else:
            cut = torch.as_tensor(self.threshold, dtype=x.dtype, device=x.device)
        return x * (norms >= cut).unsqueeze(1)


@dataclass(frozen=True)
class ClipSmallContribution:
    """Set to zero the pixels that contribute little to the activation (Yosinski et al., theta_c_pct).

    A pixel's contribution is the linear estimate of the activation change if it were set to zero,
    ``sum_c grad * (-x)``; pixels whose contribution is below the ``percentile`` of the row's are
    zeroed, in absolute value (the paper's setting 4: 90) or signed (``absolute=False``).
    """

    percentile: float = 90.0
    absolute: bool = True

    stage = "image"

    def __call__(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        if ctx.grad is None:
            raise DGNError("ClipSmallContribution needs the step's gradient")
        benefit = (ctx.grad * -x).sum(1)
        if self.absolute:
            benefit = benefit.abs()
        cut = _row_percentile(benefit.flatten(1), self.percentile).view(-1, 1, 1)
        return x * (benefit >= cut).unsqueeze(1)


@dataclass(frozen=True)
class InvertSaturated:
    """Invert the gradient of rows whose target's softmax probability exceeds ``threshold``.

    Garon et al. (seed 001) invert the gradient once the softmax saturates (their code tests
    ``p == 1`` in float32), so optimisation keeps moving instead of settling on an average image.
    The softmax is taken over the units of the row's target layer; rows on spatial layers, and rows whose
    target is a whole layer or a direction, are left alone.
    """

    threshold: float = 0.9999

    stage = "grad"

    def saturated(self, ctx: Context) -> torch.Tensor:
        """(B,) booleans: rows whose target unit is saturated."""
        out = torch.zeros(len(ctx.targets), dtype=torch.bool)
        for i, target in enumerate(ctx.targets):
            a = ctx.acts.get(target.layer)
            if a is not None and a.dim() == 2 and target.kind == "unit":
                out[i] = bool(torch.softmax(a[i].detach().float(), 0)[target.unit] > self.threshold)
        return out

    def __call__(self, g: torch.Tensor, ctx: Context) -> torch.Tensor:
        flip = self.saturated(ctx).to(g.device).view(-1, 1, 1, 1)
        return torch.where(flip, -g, g)


Regulariser = (
    Jitter | RandomScale | RandomRotate | GaussianBlur | BlurDeblur | L2Decay | ClipSmallNorm | ClipSmallContribution | InvertSaturated
)

KINDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Jitter, RandomScale, RandomRotate, GaussianBlur, BlurDeblur, L2Decay, ClipSmallNorm, ClipSmallContribution, InvertSaturated
    )
}


def describe(reg: Regulariser) -> dict:
    """A JSON-ready description: ``{"kind": class name, **parameters}``."""
    return {"kind": type(reg).__name__, **asdict(reg)}
