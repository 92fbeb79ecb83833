"""First-layer filters as images (Krizhevsky et al.'s figure 3, seed 004).

``filter_tiles`` lays out the weights of a convolution on RGB (or grey) input as one tiled image,
each filter normalised on its own or all on one scale. Filters of a BGR-trained net (CaffeNet, the
CIFAR world's cifar-caffenet) are flipped to RGB order, using the classifier's pixel space.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from dgn.errors import DGNError
from dgn.layers import resolve_layer
from dgn.spaces import PixelSpace


def first_conv(model: nn.Module) -> str:
    """The name of the model's first ``nn.Conv2d`` (in module order).

    Raises:
        DGNError: the model has no 2-D convolution.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise DGNError(f"{type(model).__name__} has no nn.Conv2d layer whose filters could be shown")


def filter_tiles(
    weight: torch.Tensor,
    space: PixelSpace | None = None,
    normalise: str = "filter",
    columns: int | None = None,
    zoom: int = 1,
    pad: int = 1,
) -> np.ndarray:
    """Tile conv filters (N, C, kh, kw) with C = 3 (colour) or 1 (grey) into one RGB image.

    Args:
        weight: the filters of a first layer.
        space: the pixel space of the layer's input; its channel order says whether to flip BGR to RGB.
        normalise: ``"filter"`` maps each filter's own min..max to 0..255; ``"global"`` maps the
            min..max over all filters (so relative strengths stay visible). A constant filter is black.
        columns: filters per row (default ceil(sqrt(N))).
        zoom: integer nearest-neighbour upscaling of each filter.
        pad: white pixels between filters.

    Returns:
        An HxWx3 uint8 array; filter ``n`` has its top-left corner at
        ``(pad + (n // columns) * (kh * zoom + pad), pad + (n % columns) * (kw * zoom + pad))``.
    """
    if weight.dim() != 4 or weight.shape[1] not in (1, 3):
        raise DGNError(
            f"filters must have shape (N, 3 or 1, kh, kw) to be shown as images, got {tuple(weight.shape)}; "
            "choose a first layer (one that reads the image)"
        )
    if normalise not in ("filter", "global"):
        raise DGNError(f"unknown normalisation {normalise!r}; valid: filter, global")
    w = weight.detach().float().cpu()
    if space is not None and space.channel_order == "BGR" and w.shape[1] == 3:
        w = w.flip(1)
    if normalise == "filter":
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
    else:
        lo, hi = w.min(), w.max()
    span = hi - lo
    scaled = torch.where(span > 0, (w - lo) / span.clamp(min=1e-12), torch.zeros_like(w))
    tiles = (scaled * 255 + 0.5).to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
    if zoom > 1:
        tiles = tiles.repeat_interleave(zoom, dim=1).repeat_interleave(zoom, dim=2)
    count, th, tw = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((pad + rows * (th + pad), pad + columns * (tw + pad), 3), 255, np.uint8)
    for n in range(count):
        r, c = divmod(n, columns)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        grid[y : y + th, x : x + tw] = tiles[n].numpy()
    return grid


def layer_filters(model: nn.Module, layer: str | None = None) -> tuple[str, torch.Tensor]:
    """(canonical name, weight) of ``layer`` (default: the first convolution).

    Raises:
        DGNError: unknown layer, or a layer without a 4-D weight.
    """
    name = first_conv(model) if layer is None else resolve_layer(model, layer)
    weight = getattr(dict(model.named_modules())[name], "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise DGNError(f"layer {layer or name!r} has no convolution weight (N, C, kh, kw); choose a conv layer")
    return name, weight
