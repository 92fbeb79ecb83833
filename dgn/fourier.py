"""The Fourier image parameterisation of Olah et al. 2017 ("Feature Visualization", Distill), as values.

An image is held as the coefficients of its real 2-D Fourier transform, per (decorrelated) colour
channel; each frequency's coefficient is scaled by ``1 / f**decay_power`` (f: the radial frequency in
cycles per pixel, at least one cycle per image) times sqrt(H W), so equal steps on every coefficient give natural,
1/f-like images instead of pixel noise. The channels are mapped to RGB through the square root of the
colour correlation of natural images (Lucid's ImageNet-derived 3x3 matrix), then squashed into 0..1
with a sigmoid. Written from the paper's description and Lucid's published constants.

The coefficients are a (B, 3, H, W // 2 + 1, 2) tensor (real and imaginary parts), one row per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dgn import spaces

# sqrt of the RGB colour correlation of ImageNet images, as Lucid publishes it (columns: decorrelated channels).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


def recorrelate(channels: torch.Tensor) -> torch.Tensor:
    """Decorrelated channels (B, 3, H, W) -> RGB-correlated ones (before the sigmoid)."""
    return torch.einsum("bchw,rc->brhw", channels, _COLOR.to(channels.device))


def decorrelate(rgb: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`recorrelate`."""
    return torch.einsum("brhw,cr->bchw", rgb, torch.linalg.inv(_COLOR).to(rgb.device))


class SigmoidImages:
    """What a parameterisation defined by ``to_rgb01(params)`` (always valid, through a sigmoid) shares:
    images in its ``work`` space, recorded as such, and no projection."""

    work: spaces.PixelSpace

    def to_rgb01(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_image(self, params: torch.Tensor) -> torch.Tensor:
        """Parameters -> images in the ``work`` space."""
        return spaces.from_rgb01(self.to_rgb01(params), self.work)

    def iterate(self, params: torch.Tensor) -> torch.Tensor:
        """What a run records of the parameters: their images."""
        return self.to_image(params)

    @staticmethod
    def project(params: torch.Tensor) -> torch.Tensor:
        """Nothing to keep in bounds: the sigmoid keeps every image valid."""
        return params


def radial_frequencies(height: int, width: int) -> torch.Tensor:
    """(H, W // 2 + 1) radial frequency of each real-FFT coefficient, in cycles per pixel."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fy * fy + fx * fx)


@dataclass
class FourierImages(SigmoidImages):
    """Images of ``size`` held as scaled Fourier coefficients, shown in pixel space ``work``.

    Args:
        size: (H, W) of the images.
        work: the pixel space the images are returned in (e.g. Caffe BGR minus mean, 0..255).
        decay_power: the spectrum's 1/f exponent (1: Lucid's default).
        sd: standard deviation of the random start's coefficients.
        decorrelate: map channels through the colour correlation's square root (else they are RGB).
    """

    size: tuple[int, int]
    work: spaces.PixelSpace
    decay_power: float = 1.0
    sd: float = 0.01
    decorrelate: bool = True

    def __post_init__(self) -> None:
        h, w = self.size
        floor = 1.0 / max(h, w)  # one cycle per image: the DC coefficient gets the lowest frequency's scale
        self.scale = (1.0 / radial_frequencies(h, w).clamp_min(floor) ** self.decay_power) * math.sqrt(h * w)

    def start(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """One random spectrum per seed, drawn on the CPU in float64 (the same on every device)."""
        h, w = self.size
        shape = (3, h, w // 2 + 1, 2)
        draws = [np.random.RandomState(seed).normal(0, self.sd, shape) for seed in seeds]
        return torch.from_numpy(np.stack(draws)).float().to(device)

    def to_rgb01(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Coefficients -> RGB 0..1 images (B, 3, H, W), differentiable."""
        spectrum = torch.view_as_complex(coeffs.float().contiguous()) * self.scale.to(coeffs.device)
        channels = torch.fft.irfft2(spectrum, s=self.size, norm="backward") / 4  # Lucid's magic 4
        return torch.sigmoid(recorrelate(channels) if self.decorrelate else channels)

    def coefficients(self, rgb01: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
        """The coefficients of RGB 0..1 images (B, 3, H, W): the inverse of :meth:`to_rgb01` (values are
        clamped to [eps, 1 - eps] first, where the sigmoid's inverse is finite)."""
        x = rgb01.float().clamp(eps, 1 - eps)
        channels = torch.log(x) - torch.log1p(-x)
        if self.decorrelate:
            channels = decorrelate(channels)
        spectrum = torch.fft.rfft2(channels * 4, norm="backward") / self.scale.to(x.device)
        return torch.view_as_real(spectrum).contiguous()
