"""Parameterisations: what the engine optimises and how it becomes the model's input, as values.

Each one gives the parameters' start, ``to_image`` (parameters -> the model's input, differentiable),
``project`` (keep the parameters in bounds after a step) and ``iterate`` (what a run records and
returns for the parameters). The engine (:mod:`dgn.engine`) takes these as they are.

- :class:`GeneratorCodes`: DGN-AM's codes of a generator prior, one per row, in a box with decay.
- :class:`VideoCodes`: one code per frame of a video; a row is a whole video (frames on dimension 1).
- :class:`Pixels`: images themselves, in a work space at an octave's size (image-space AM).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dgn import spaces
from dgn.engine import BoxDecay
from dgn.errors import DGNError
from dgn.models import Generator


def initial_codes(seeds: Iterable[int], code_shape: Sequence[int]) -> torch.Tensor:
    """One N(0, 1) code per seed, drawn exactly as act_max did (``np.random.seed(s); normal(0, 1)``).

    The draw happens on the CPU in float64, so it is the same on every device.
    """
    codes = [np.random.RandomState(seed).normal(0, 1, (1, *code_shape)) for seed in seeds]
    return torch.from_numpy(np.concatenate(codes)).float()


def upper_bound_tensor(bound: float | torch.Tensor | None, code_shape: Sequence[int]) -> torch.Tensor | None:
    """Per-code-unit upper bounds of shape ``code_shape`` (from a scalar or a tensor), or None."""
    if bound is None:
        return None
    tensor = torch.as_tensor(bound, dtype=torch.float32)
    if tensor.dim() == 0:
        return tensor.expand(*code_shape).clone()
    if tensor.numel() != math.prod(code_shape):
        raise DGNError(f"bounds have {tensor.numel()} values but the generator's code has {math.prod(code_shape)} units")
    return tensor.reshape(*code_shape)


@torch.no_grad()
def render_codes(generator: Generator, codes: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]],
                 device: torch.device | str = "cpu", batch_size: int = 16) -> list[torch.Tensor]:
    """Generator images (in the generator's space, on the CPU) of ``codes``, each cropped to its box."""
    out: list[torch.Tensor] = []
    for start in range(0, codes.shape[0], batch_size):
        images = generator(codes[start : start + batch_size].to(device)).float().cpu()
        for image, (top, left, h, w) in zip(images, boxes[start : start + batch_size]):
            out.append(image[:, top : top + h, left : left + w])
    return out


@dataclass
class GeneratorCodes:
    """Codes of a generator prior (B, *code_shape), seen by a model of pixel space ``target``.

    Args:
        generator: the prior G.
        target: the model's pixel space (with its input size).
        fit_mode: how G's images are fitted to the model's input size (``spaces.fit``).
        lower, upper, decay: act_max's box (lower scalar, upper scalar or per code unit) and decay;
            ``upper`` None: the generator's default bound.
        device: where the codes live.
    """

    generator: Generator
    target: spaces.PixelSpace
    fit_mode: str = "auto"
    lower: float | None = 0.0
    upper: float | torch.Tensor | None = None
    decay: float = 0.99
    device: torch.device | str = "cpu"

    @functools.cached_property
    def project(self) -> BoxDecay:
        """act_max's box and decay (built on first use, so a parameterisation made only to render is cheap)."""
        bound = self.upper if self.upper is not None else self.generator.default_upper_bound
        upper = upper_bound_tensor(bound, self.generator.code_shape)
        return BoxDecay(self.lower, upper.to(self.device) if upper is not None else None, self.decay)

    def start(self, seeds: Sequence[int]) -> torch.Tensor:
        """One act_max start per seed."""
        return initial_codes(seeds, self.generator.code_shape).to(self.device)

    def to_image(self, codes: torch.Tensor) -> torch.Tensor:
        """G(codes) in the model's pixel space and input size."""
        return spaces.convert(self.generator(codes), self.generator.space, self.target, self.fit_mode)

    @staticmethod
    def iterate(codes: torch.Tensor) -> torch.Tensor:
        return codes


@dataclass
class VideoCodes(GeneratorCodes):
    """One code per frame; a row is a whole video, (1, frames, *code_shape), its frames G(code) each."""

    frames: int = 1

    def start(self, seeds: Sequence[int], shared: bool = False) -> torch.Tensor:
        """Frame f from seed ``seeds[0] + f``, or every frame from ``seeds[0]`` with ``shared``: (1, F, ...)."""
        seed, shape = seeds[0], self.generator.code_shape
        if shared:
            codes = initial_codes([seed], shape).repeat(self.frames, *([1] * len(shape)))
        else:
            codes = initial_codes([seed + f for f in range(self.frames)], shape)
        return codes[None].to(self.device)

    def per_frame(self) -> GeneratorCodes:
        """The same prior, space and box for codes one per frame (B, *code_shape), e.g. to encode a start."""
        return GeneratorCodes(self.generator, self.target, self.fit_mode, self.lower, self.upper, self.decay,
                              self.device)

    def to_image(self, video: torch.Tensor) -> torch.Tensor:
        """The frames (F, 3, H, W) of one video in the model's pixel space."""
        return super().to_image(video[0])


@dataclass
class Pixels:
    """Images themselves (B, 3, h, w) in ``work`` space at an octave's size, shown to the model at ``size``.

    Args:
        size: the model's input size; every octave's image is resized to it (bilinear).
        clamp_range: (low, high) per channel, (1, 3, 1, 1) each, to clamp pixels to after each step; None: no
            clamp.
    """

    size: tuple[int, int]
    clamp_range: tuple[torch.Tensor, torch.Tensor] | None = None

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """The image at the model's input size (still in the work space)."""
        return resize(x, self.size)

    iterate = to_image

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels clamped to ``clamp_range`` (unchanged without one): the projection after each step."""
        if self.clamp_range is None:
            return x
        return torch.clamp(x, *self.clamp_range)

    project = clamp


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` (unchanged when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
