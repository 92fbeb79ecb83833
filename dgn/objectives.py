"""Objectives: one scalar per batch row, computed from the captured layer outputs.

An objective knows which layers it needs (``layers``), evaluates a batch (``__call__``) and can be
restricted to a subset of its rows (``rows``) so a long list of rows can be run in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dgn.targets import Target


def gather_units(acts: dict[str, torch.Tensor], targets: Sequence[Target], post_relu: bool = False) -> torch.Tensor:
    """Pick each row's own unit from the captured outputs: row i gets ``targets[i]``.

    Args:
        acts: layer name -> output (B, C) or (B, C, H, W); targets must use these names.
        targets: one resolved target per row (spatial layers need a position).
        post_relu: apply ReLU to the picked value (the default is the pre-ReLU output).

    Returns:
        (B,) activations, differentiable.
    """
    batch = len(targets)
    first = next(iter(acts.values()))
    out = torch.zeros(batch, dtype=torch.float32, device=first.device)
    by_layer: dict[str, list[int]] = {}
    for row, target in enumerate(targets):
        by_layer.setdefault(target.layer, []).append(row)
    for layer, rows in by_layer.items():
        a = acts[layer]
        idx = torch.tensor(rows, device=a.device)
        units = torch.tensor([targets[r].unit for r in rows], device=a.device)
        if a.dim() == 2:
            values = a[idx, units]
        else:
            ys = torch.tensor([targets[r].position[0] for r in rows], device=a.device)
            xs = torch.tensor([targets[r].position[1] for r in rows], device=a.device)
            values = a[idx, units, ys, xs]
        out = out.index_put((idx,), values.float())
    return F.relu(out) if post_relu else out


@dataclass
class UnitObjective:
    """Maximise one unit per row (the DGN-AM objective).

    Args:
        targets: one resolved target per row.
        post_relu: maximise the post-ReLU value instead of the pre-ReLU one.
    """

    targets: list[Target]
    post_relu: bool = False
    layers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.layers = tuple(dict.fromkeys(t.layer for t in self.targets))

    def __len__(self) -> int:
        return len(self.targets)

    def __call__(self, acts: dict[str, torch.Tensor], codes: torch.Tensor | None = None) -> torch.Tensor:
        return gather_units(acts, self.targets, self.post_relu)

    def rows(self, index: Sequence[int]) -> UnitObjective:
        return UnitObjective([self.targets[i] for i in index], self.post_relu)
