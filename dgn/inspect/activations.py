"""Activations of one layer for an input image or batch (Yosinski et al.'s toolbox view).

``layer_activations`` runs the classifier to a layer; ``channel_grid`` tiles every channel of one
image's activations (each tile normalised for display); ``activation_figure`` puts the input image,
that grid and one zoomed channel side by side; ``top_units`` ranks a layer's units by their mean or
maximum activation over the batch. Also the small helpers the other inspect verbs share: reading
image files into a classifier's pixel space, class names, and side-by-side panels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dgn import spaces
from dgn.errors import DGNError
from dgn.layers import forward_to, resolve_layer
from dgn.models import Classifier

# ----- helpers shared by the inspect verbs ----------------------------------------------------------


def load_input(paths: Sequence[str | Path], classifier: Classifier) -> torch.Tensor:
    """Image files -> a batch (N, C, H, W) in the classifier's pixel space, resized to its input size.

    Raises:
        DGNError: a file is missing or unreadable, or the classifier declares no input size.
    """
    if classifier.space.size is None:
        raise DGNError(f"classifier {classifier.name!r} does not declare an input size")
    from dgn.data import load_images

    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise DGNError(f"image file not found: {missing[0]}")
    rgb = load_images(list(paths), size=classifier.space.size)
    return spaces.convert(rgb, spaces.RGB01, classifier.space)


def class_names(classifier: Classifier, count: int) -> list[str]:
    """Names of the classifier's ``count`` outputs (the CIFAR-10 names for the CIFAR nets, else indices)."""
    if len(classifier.class_names) == count:
        return list(classifier.class_names)
    if count == 10 and "cifar" in classifier.name:
        from dgn.nets.toy import CIFAR_CLASSES

        return list(CIFAR_CLASSES)
    return [str(i) for i in range(count)]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def display_image(x: torch.Tensor, space: spaces.PixelSpace) -> np.ndarray:
    """One image (C, H, W) in ``space`` -> HxWx3 uint8 RGB (the faithful mean-add decode)."""
    from dgn.render import to_uint8

    return to_uint8(x, space, style="mean")


def upscale(array: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize of an HxW(x3) uint8 array to ``height`` rows (aspect kept): pixels stay visible."""
    h, w = array.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.NEAREST))


def side_by_side(panels: Sequence[tuple[np.ndarray, str]], height: int = 256, pad: int = 8) -> np.ndarray:
    """Panels (array, caption) scaled to ``height`` and laid out in one row with captions beneath."""
    scaled = [upscale(a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2), height) for a, _ in panels]
    caption = 16
    width = sum(a.shape[1] for a in scaled) + pad * (len(scaled) + 1)
    canvas = Image.new("RGB", (width, height + caption + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for array, (_, text) in zip(scaled, panels):
        canvas.paste(Image.fromarray(array), (x, pad))
        draw.text((x + 1, pad + height + 2), text, fill=(0, 0, 0))
        x += array.shape[1] + pad
    return np.asarray(canvas)


# ----- activations ----------------------------------------------------------------------------------


def layer_activations(model: torch.nn.Module, inputs: torch.Tensor, layer: str, rectify: bool = False) -> torch.Tensor:
    """The output of ``layer`` (name or alias) for a batch, before any following ReLU.

    Args:
        model: the classifier (eval mode).
        inputs: (B, C, H, W) in the classifier's pixel space.
        layer: e.g. ``conv2`` or ``features.3``.
        rectify: clamp at zero (the values a following ReLU passes on).

    Returns:
        (B, ...) activations, detached.
    """
    name = resolve_layer(model, layer)
    with torch.no_grad():
        acts = forward_to(model, inputs.to(model_device(model)), [name])[name].detach()
    return acts.clamp(min=0) if rectify else acts


def _normalise(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    span = hi - lo
    return torch.where(span > 0, (values - lo) / span.clamp(min=1e-12), torch.zeros_like(values))


def channel_grid(
    maps: torch.Tensor, columns: int | None = None, zoom: int = 1, pad: int = 1, normalise: str = "channel"
) -> np.ndarray:
    """Tile every channel of one image's activations (C, H, W) into one grey image.

    Args:
        maps: activations of one image.
        columns: tiles per row (default: ceil(sqrt(C))).
        zoom: integer upscaling of each tile (nearest neighbour).
        pad: pixels of white between tiles.
        normalise: ``"channel"`` maps each channel's min..max to black..white (a constant channel is
            black); ``"global"`` uses the min..max over all channels.

    Returns:
        An HxW uint8 array; tile ``c`` has its top-left corner at
        ``(pad + (c // columns) * (H * zoom + pad), pad + (c % columns) * (W * zoom + pad))``.
    """
    if maps.dim() != 3:
        raise DGNError(f"channel_grid needs activations of shape (C, H, W), got {tuple(maps.shape)}")
    if normalise not in ("channel", "global"):
        raise DGNError(f"unknown normalisation {normalise!r}; valid: channel, global")
    maps = maps.detach().float().cpu()
    count, height, width = maps.shape
    if normalise == "channel":
        lo = maps.amin(dim=(1, 2), keepdim=True)
        hi = maps.amax(dim=(1, 2), keepdim=True)
    else:
        lo, hi = maps.min(), maps.max()
    tiles = (_normalise(maps, lo, hi) * 255 + 0.5).to(torch.uint8)
    if zoom > 1:
        tiles = tiles.repeat_interleave(zoom, dim=1).repeat_interleave(zoom, dim=2)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    th, tw = height * zoom, width * zoom
    grid = np.full((pad + rows * (th + pad), pad + columns * (tw + pad)), 255, np.uint8)
    for c in range(count):
        r, k = divmod(c, columns)
        y, x = pad + r * (th + pad), pad + k * (tw + pad)
        grid[y : y + th, x : x + tw] = tiles[c].numpy()
    return grid


def channel_image(channel: torch.Tensor) -> np.ndarray:
    """One activation map (H, W), min..max -> black..white, as HxW uint8."""
    return channel_grid(channel[None], columns=1, pad=0)


def activation_figure(image: np.ndarray, maps: torch.Tensor, channel: int, height: int = 256) -> np.ndarray:
    """The input image, the grid of every channel, and channel ``channel`` zoomed, side by side.

    Raises:
        DGNError: ``channel`` is out of range.
    """
    if not 0 <= channel < maps.shape[0]:
        raise DGNError(f"channel {channel} out of range: valid channels are 0..{maps.shape[0] - 1}")
    zoom = max(1, 24 // maps.shape[-1])
    return side_by_side(
        [(image, "input"), (channel_grid(maps, zoom=zoom), f"{maps.shape[0]} channels"),
         (channel_image(maps[channel]), f"channel {channel}")],
        height=height,
    )


def top_units(acts: torch.Tensor, k: int = 9, by: str = "mean") -> list[tuple[int, float]]:
    """The ``k`` units (channels) of a layer most active over a batch.

    Args:
        acts: (B, C) or (B, C, H, W) activations.
        k: how many units (capped at C).
        by: ``"mean"`` (mean over the batch and positions) or ``"max"`` (the maximum over them).

    Returns:
        ``(unit, score)`` pairs, highest score first (ties: lower unit first).
    """
    if by not in ("mean", "max"):
        raise DGNError(f"unknown ranking {by!r}; valid: mean, max")
    if acts.dim() < 2:
        raise DGNError(f"top_units needs activations of shape (B, C, ...), got {tuple(acts.shape)}")
    per_unit = acts.detach().float().transpose(0, 1).reshape(acts.shape[1], -1)
    scores = per_unit.mean(dim=1) if by == "mean" else per_unit.amax(dim=1)
    order = sorted(range(len(scores)), key=lambda u: (-float(scores[u]), u))
    return [(u, float(scores[u])) for u in order[: max(0, k)]]
