"""Per-code-unit upper bounds for the code optimisation.

The original act_max clipped each fc6 code unit to [0, round(mean + 3 std)] of that unit's
(post-ReLU) activations over dataset images (``act_range/3x/fc6.txt``). ``compute_bounds``
rebuilds such a file for any encoder layer from a stream of images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from dgn import spaces
from dgn.errors import DGNError
from dgn.files import atomic_write_bytes
from dgn.layers import forward_to, resolve_layer
from dgn.models import Classifier


@torch.no_grad()
def activation_stats(
    encoder: Classifier,
    layer: str,
    batches: Iterable[torch.Tensor],
    post_relu: bool = True,
    fit_mode: str = "auto",
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-unit mean and (population) std of a layer's activations over images.

    Args:
        encoder: the network whose layer is the code (e.g. CaffeNet, layer fc6).
        layer: the code layer; spatial layers are flattened (C*H*W units).
        batches: RGB 0..1 image batches (B, 3, H, W); each is converted to the encoder's space and size.
        post_relu: statistics of ReLU(activation), as Caffe stores fc6 after its in-place ReLU.

    Returns:
        (mean, std, number of images).
    """
    name = resolve_layer(encoder.module, layer)
    encoder.module.to(device).eval()
    total = total_sq = None
    count = 0
    for rgb in batches:
        x = spaces.convert(rgb.to(device), spaces.RGB01, encoder.space, fit_mode)
        a = forward_to(encoder.module, x, [name])[name].flatten(1).double()
        if post_relu:
            a = a.clamp_min(0)
        total = a.sum(0) if total is None else total + a.sum(0)
        total_sq = (a * a).sum(0) if total_sq is None else total_sq + (a * a).sum(0)
        count += a.shape[0]
    if count == 0:
        raise DGNError("no images to compute bounds from")
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    return mean.float().cpu(), var.sqrt().float().cpu(), count


def bounds_from_stats(mean: torch.Tensor, std: torch.Tensor, k: float = 3.0) -> torch.Tensor:
    """round(mean + k * std) per unit, never below 0 (the original's integer bounds)."""
    return torch.round(mean + k * std).clamp_min(0)


def write_bounds(path: str | Path, bounds: torch.Tensor) -> None:
    """Write bounds as one whitespace-separated line, like ``act_range/3x/fc6.txt`` (atomically)."""
    values = bounds.flatten().tolist()
    text = " ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values)
    atomic_write_bytes(path, (text + "\n").encode())
