"""MACO (Fel et al., NeurIPS 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization"): images whose Fourier magnitude is fixed to that of natural images and whose
*phase* alone is optimised, as values; and the random crops plus noise it trains through.

An image of a row is made from its phase P (3, H, W // 2 + 1): P is standardised, the spectrum is
``magnitude * exp(i P)`` per decorrelated colour channel, its inverse real FFT is standardised, mapped to
RGB through the colour correlation's square root (``dgn.fourier``) and squashed into 0..1 by a sigmoid.

The magnitude comes from natural images: :func:`natural_magnitude` averages |FFT| of the decorrelated
channels of a set of images. dgn ships the one of the CIFAR-10 world's 8,000 training images
(``training/maco_spectrum.py``) and resizes it to any canvas (bilinear, as horama resizes its ImageNet
template); give your own images for another domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgn import spaces
from dgn.fourier import SigmoidImages, decorrelate, recorrelate

SHIPPED_MAGNITUDE = Path(__file__).resolve().parent / "pretrained" / "maco-magnitude-cifar10.safetensors"


def natural_magnitude(rgb01: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Mean |real FFT| (3, H, W // 2 + 1) of the decorrelated, per-image standardised channels of RGB 0..1
    images (N, 3, H, W), resized first to ``size`` when given."""
    x = rgb01.float()
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    x = decorrelate(x)
    x = (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True).clamp_min(1e-6)
    return torch.fft.rfft2(x).abs().mean(0)


def resize_magnitude(magnitude: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A magnitude template (3, h, w // 2 + 1) resized to the spectrum of a ``size`` image."""
    shape = (size[0], size[1] // 2 + 1)
    if tuple(magnitude.shape[-2:]) == shape:
        return magnitude
    return F.interpolate(magnitude[None], size=shape, mode="bilinear", align_corners=False, antialias=True)[0]


def shipped_magnitude() -> torch.Tensor:
    """The magnitude of the CIFAR-10 world's training images (3, 32, 17), shipped with dgn."""
    from safetensors.torch import load_file

    return load_file(str(SHIPPED_MAGNITUDE))["magnitude"]


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation per row (every dimension but the first)."""
    dims = tuple(range(1, x.dim()))
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-4)


@dataclass
class MacoImages(SigmoidImages):
    """Images of ``size`` with a fixed magnitude spectrum, held as their phase, shown in pixel space ``work``.

    Args:
        size: (H, W) of the images (MACO's canvas).
        work: the pixel space the images are returned in.
        magnitude: (3, h, w // 2 + 1) template, resized to ``size``; None: the shipped CIFAR-10 one.
    """

    size: tuple[int, int]
    work: spaces.PixelSpace
    magnitude: torch.Tensor | None = None

    def __post_init__(self) -> None:
        template = self.magnitude if self.magnitude is not None else shipped_magnitude()
        self.magnitude = resize_magnitude(template.float(), self.size)

    def start(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """One N(0, 1) phase per seed, drawn on the CPU in float64 (the same on every device)."""
        shape = (3, self.size[0], self.size[1] // 2 + 1)
        return torch.from_numpy(np.stack([np.random.RandomState(s).normal(0, 1, shape) for s in seeds])).float().to(device)

    def to_rgb01(self, phase: torch.Tensor) -> torch.Tensor:
        """Phases -> RGB 0..1 images (B, 3, H, W), differentiable."""
        spectrum = torch.polar(self.magnitude.to(phase.device).expand_as(phase), _standardise(phase.float()))
        channels = _standardise(torch.fft.irfft2(spectrum, s=self.size))
        return torch.sigmoid(recorrelate(channels))


@dataclass(frozen=True)
class CropsAndNoise:
    """MACO's augmentation: per row and step, a random square crop of the canvas resized to the model's
    input, plus Gaussian and uniform noise.

    The crop's side is a fraction of the canvas drawn from U(``box``), its centre 0.5 + ``centre_sd`` * N(0, 1)
    of the canvas per axis (MACO's 0.20-0.25 and 0.15); outside the canvas the crop reads zeros (the mean
    colour in a mean-subtracted work space). ``noise`` is in work-space units.
    """

    out_size: tuple[int, int]
    box: tuple[float, float] = (0.20, 0.25)
    centre_sd: float = 0.15
    noise: float = 2.9

    stage = "input"

    def __call__(self, x: torch.Tensor, ctx) -> torch.Tensor:
        params = []
        for g in ctx.rngs:
            side = self.box[0] + (self.box[1] - self.box[0]) * float(torch.rand(1, generator=g, dtype=torch.float64))
            cy, cx = (0.5 + self.centre_sd * torch.randn(2, generator=g, dtype=torch.float64)).tolist()
            params.append((side, cy, cx))
        side, cy, cx = (torch.tensor(v, dtype=x.dtype, device=x.device) for v in zip(*params))
        theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 1, 1] = side, side
        theta[:, 0, 2], theta[:, 1, 2] = 2 * cx - 1, 2 * cy - 1
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *self.out_size], align_corners=False)
        crops = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        noise = torch.stack([torch.randn(crops.shape[1:], generator=g) + torch.rand(crops.shape[1:], generator=g) - 0.5
                             for g in ctx.rngs]).to(crops.device, crops.dtype)
        return crops + self.noise * noise
