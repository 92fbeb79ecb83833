"""Receptive fields by one backward pass (Wang et al., supplement section 4.2).

Put a 1 on one output position of a layer (summed over its channels), back-propagate to the
input, and take the bounding box of the pixels with a non-zero gradient. Works for any model,
padding, pooling or stride, with nothing hard-coded. Several random inputs are used at once and
their supports united, because a max pool or a ReLU routes one input's gradient through only
some of the pixels that can reach the unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dgn import spaces
from dgn.layers import forward_to, resolve_layer


def _spans(model: nn.Module, name: str, positions: Sequence[tuple[int, int]], input_shape: Sequence[int],
           trials: int, seed: int, chunk: int = 8) -> list[tuple[int, int, int, int]]:
    """Per position, (first row, end row, first column, end column) of the input pixels whose gradient is
    non-zero for ``trials`` seeded random inputs (the whole image where none is), ``chunk`` positions per
    backward pass (each position its own copies of the inputs)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x0 = torch.randn(trials, *input_shape, generator=torch.Generator().manual_seed(seed)).to(device)
    height, width = int(input_shape[-2]), int(input_shape[-1])
    spans = []
    for start in range(0, len(positions), chunk):
        batch = positions[start : start + chunk]
        x = x0.repeat(len(batch), 1, 1, 1).requires_grad_(True)
        with torch.enable_grad():  # also when the caller computes without gradients (e.g. an evolution)
            out = forward_to(model, x, [name])[name]
            picked = [out[j * trials : (j + 1) * trials, :, y, xp].sum() for j, (y, xp) in enumerate(batch)]
            (grad,) = torch.autograd.grad(torch.stack(picked).sum(), x)
        support = grad.detach().abs().view(len(batch), trials, *grad.shape[1:]).sum(dim=(1, 2)) > 0
        for j in range(len(batch)):
            rows = torch.nonzero(support[j].any(dim=1)).flatten()
            cols = torch.nonzero(support[j].any(dim=0)).flatten()
            if rows.numel() == 0:
                spans.append((0, height, 0, width))
            else:
                spans.append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
    return spans


def receptive_field(
    model: nn.Module,
    layer: str,
    position: tuple[int, int],
    input_shape: Sequence[int],
    trials: int = 4,
    seed: int = 0,
) -> tuple[int, int, int, int]:
    """Bounding box of the input pixels that can influence ``layer`` at ``position``.

    Args:
        model: the network (in eval mode).
        layer: a layer name or alias with spatial output (C, H, W).
        position: (y, x) in that layer's output.
        input_shape: (C, H, W) of the model's input.
        trials: random inputs whose gradient supports are united.
        seed: seed of the random inputs.

    Returns:
        (top, left, height, width) in input pixels, clipped to the image.
    """
    ((top, bottom, left, right),) = _spans(model, resolve_layer(model, layer), [tuple(position)], input_shape,
                                           trials, seed)
    return top, left, bottom - top, right - left


def receptive_fields_grid(
    model: nn.Module,
    layer: str,
    grid: tuple[int, int],
    input_shape: Sequence[int],
    trials: int = 4,
    seed: int = 0,
    chunk: int = 8,
) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """The receptive field of every position of a layer's ``grid`` (H, W), as :func:`receptive_field` gives
    them, in max(H, W) backward passes batched ``chunk`` at a time instead of H * W passes.

    A position's support is the rows that reach its y times the columns that reach its x (convolutions and
    poolings have rectangular kernels), so the diagonal positions (i, i) give every row and column range.
    """
    height, width = grid
    diagonal = [(min(i, height - 1), min(i, width - 1)) for i in range(max(height, width))]
    spans = _spans(model, resolve_layer(model, layer), diagonal, input_shape, trials, seed, chunk)
    rows = {y: (top, bottom) for (y, _), (top, bottom, _, _) in zip(diagonal, spans)}
    cols = {x: (left, right) for (_, x), (_, _, left, right) in zip(diagonal, spans)}
    return {(y, x): (rows[y][0], cols[x][0], rows[y][1] - rows[y][0], cols[x][1] - cols[x][0])
            for y in range(height) for x in range(width)}


class ReceptiveFields:
    """Receptive fields of one model's units, computed once per (layer, position) and remembered."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        self.model = model
        self.input_shape = tuple(input_shape)
        self._boxes: dict[tuple[str, tuple[int, int]], tuple[int, int, int, int]] = {}

    def get(self, layer: str, position: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, height, width) in input pixels; see :func:`receptive_field`."""
        key = (layer, tuple(position))
        if key not in self._boxes:
            self._boxes[key] = receptive_field(self.model, layer, key[1], self.input_shape)
        return self._boxes[key]

    def fill(self, layer: str, grid: tuple[int, int]) -> None:
        """Compute every position of ``layer``'s (H, W) grid at once (see :func:`receptive_fields_grid`)."""
        boxes = receptive_fields_grid(self.model, layer, grid, self.input_shape)
        self._boxes.update({(layer, position): box for position, box in boxes.items()})


def generator_view_box(
    generator_size: tuple[int, int],
    classifier_size: tuple[int, int] | None,
    fit_mode: str,
    layer: str,
    position: tuple[int, int] | None,
    fields: ReceptiveFields | None,
) -> tuple[int, int, int, int]:
    """Box (top, left, h, w) of a generator image to show for a unit: the region the classifier sees, and for
    a unit at a ``position`` (with ``fields``, the classifier's receptive fields) the part of it in the unit's
    receptive field."""
    (top, left, h, w), _ = spaces.fit_region(generator_size, classifier_size, fit_mode)
    if position is None or fields is None or classifier_size is None:
        return top, left, h, w
    rf_top, rf_left, rf_h, rf_w = fields.get(layer, position)
    in_h, in_w = classifier_size
    sy, sx = h / in_h, w / in_w
    return top + round(rf_top * sy), left + round(rf_left * sx), max(1, round(rf_h * sy)), max(1, round(rf_w * sx))
