"""Rows: one optimisation each (a target, a restart, a seed), planned from targets, run in chunks, and
their results. Shared by every method (DGN-AM, image-space AM, pairs, mixtures)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from dgn.errors import DGNError
from dgn.layers import forward_to, resolve_layer
from dgn.models import Classifier, input_shape
from dgn.objectives import Diversity
from dgn.targets import Target, as_target, resolve_target, split_pair


@dataclass(frozen=True)
class Row:
    """One optimisation: a target, a restart index and the seed of its initial code."""

    target: Target
    restart: int
    seed: int
    label: str  # the target as the user wrote it
    partner: Target | None = None  # the second unit of a two-neuron row ("A+B")

    @property
    def key(self) -> str:
        pair = f"+{self.partner}" if self.partner is not None else ""
        return f"{self.target}{pair}#r{self.restart}"

    @property
    def slug(self) -> str:
        pair = f"__{self.partner.slug}" if self.partner is not None else ""
        return f"{self.target.slug}{pair}_r{self.restart:02d}"


@dataclass
class RowsResult:
    """Results for a list of rows (a chunk, or a whole run), in row order.

    ``codes_last`` produced the final image (the last iterate, before its update, as act_max returns
    it); ``codes_best`` the iterate with the highest activation. ``view_boxes`` give, per row, the box
    of the generator image to show (the classifier's view, or a spatial unit's receptive field).
    """

    rows: list[Row]
    codes_last: torch.Tensor
    codes_best: torch.Tensor
    act_start: torch.Tensor
    act_end: torch.Tensor
    act_best: torch.Tensor
    best_step: torch.Tensor
    view_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    pair_end: torch.Tensor | None = None  # (B, 2): both units' final activations (pair runs only)

    def row_extra(self, index: int) -> dict:
        """Method-specific facts about one row for the manifest: both activations of a pair row."""
        if self.pair_end is None or self.rows[index].partner is None:
            return {}
        return {"partner": str(self.rows[index].partner), "act_a": float(self.pair_end[index, 0]),
                "act_b": float(self.pair_end[index, 1])}

    @staticmethod
    def concat(parts: Sequence[RowsResult]) -> RowsResult:
        if not parts:
            raise DGNError("no rows to combine")
        cat = lambda name: torch.cat([getattr(p, name) for p in parts])
        return RowsResult(
            [r for p in parts for r in p.rows],
            cat("codes_last"),
            cat("codes_best"),
            cat("act_start"),
            cat("act_end"),
            cat("act_best"),
            cat("best_step"),
            [b for p in parts for b in p.view_boxes],
            torch.cat([p.pair_end for p in parts]) if all(p.pair_end is not None for p in parts) else None,
        )


def run_in_chunks(
    rows: Sequence[Row],
    batch_size: int,
    optimise: Callable[[list[Row]], RowsResult],
    on_chunk: Callable[[RowsResult], None] | None = None,
) -> list[RowsResult]:
    """Optimise ``rows`` in consecutive chunks of ``batch_size``, handing each finished chunk to ``on_chunk``.

    Rows are independent, so the results do not depend on ``batch_size``; it only trades memory for speed.
    """
    if batch_size < 1:
        raise DGNError(f"batch size must be >= 1, got {batch_size}")
    parts = []
    for start in range(0, len(rows), batch_size):
        part = optimise(list(rows[start : start + batch_size]))
        if on_chunk is not None:
            on_chunk(part)
        parts.append(part)
    return parts


def starts_by_row(rows: Sequence[Row], start: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Each row's initial parameters (by ``Row.key``) from one start for all rows or one per row; {} for None."""
    if start is None:
        return {}
    if start.shape[0] not in (1, len(rows)):
        raise DGNError(f"{start.shape[0]} starts for {len(rows)} rows: give one start for all rows or one per row "
                       "(targets x restarts, restarts innermost)")
    return {r.key: start[0 if start.shape[0] == 1 else i] for i, r in enumerate(rows)}


def coupled_rows(planned: Sequence[Row], skip: set[str], batch_size: int) -> tuple[list[Row], int]:
    """Rows to run when the restarts of a target are optimised together (a diversity term couples them).

    Returns every row of each target with an unfinished row (a finished one runs again, to the same
    result, so its siblings see it), and the batch size rounded up to whole targets.
    """
    groups: dict[str, list[Row]] = {}
    for row in planned:
        groups.setdefault(row.label, []).append(row)
    size = max(len(g) for g in groups.values()) if groups else 1
    rows = [r for g in groups.values() if any(r.key not in skip for r in g) for r in g]
    return rows, max(size, -(-batch_size // size) * size)


def rows_to_run(planned: Sequence[Row], skip: set[str], batch_size: int, coupled: bool) -> tuple[list[Row], int]:
    """The planned rows a run still has to optimise and its batch size: the unfinished rows, or with ``coupled``
    restarts (a diversity term) whole targets (see :func:`coupled_rows`)."""
    if coupled:
        return coupled_rows(planned, skip, batch_size)
    return [r for r in planned if r.key not in skip], batch_size


def stack_starts(chunk: Sequence[Row], starts: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The start of each row of ``chunk`` (from :func:`starts_by_row`) as one batch, or None without starts."""
    return torch.stack([starts[r.key] for r in chunk]) if starts else None


def diversity_among_restarts(rows: Sequence[Row], module: torch.nn.Module, weight: float,
                             layer: str | None = None) -> Diversity:
    """The diversity term of ``rows``: each target's restarts (rows with one label) pushed apart at ``layer``
    (a name or alias of ``module``; None: each row's target layer)."""
    name = resolve_layer(module, layer) if layer else None
    return Diversity([r.label for r in rows], [name or r.target.layer for r in rows], weight)


def plan_rows(
    targets: Sequence[Target],
    labels: Sequence[str],
    restarts: int,
    seed: int,
    partners: Sequence[Target | None] | None = None,
) -> list[Row]:
    """Every (target, restart) row; restart r of every target starts from seed ``seed + r``.

    With one restart and seed 0 each target starts from the original act_max's initial code.
    """
    if restarts < 1:
        raise DGNError(f"restarts must be >= 1, got {restarts}")
    partners = list(partners) if partners is not None else [None] * len(targets)
    return [
        Row(t, r, seed + r, label, partner)
        for t, label, partner in zip(targets, labels, partners)
        for r in range(restarts)
    ]


class TargetPlanner:
    """Target resolution shared by every method that visualises a classifier's units.

    Needs ``self.classifier`` and ``self.device``; caches layer output shapes.
    """

    classifier: Classifier
    device: torch.device

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Output shape (without batch) of a layer of the classifier."""
        name = resolve_layer(self.classifier.module, layer)
        shapes: dict[str, tuple[int, ...]] = self.__dict__.setdefault("_layer_shapes", {})
        if name not in shapes:
            x = torch.zeros(1, *input_shape(self.classifier), device=self.device)
            with torch.no_grad():
                shapes[name] = tuple(forward_to(self.classifier.module, x, [name])[name].shape[1:])
        return shapes[name]

    def resolve(self, target: str | Target) -> Target:
        """Validate a target against the classifier and fill in its canonical layer and position."""
        target = as_target(target)
        shape = self.layer_shape(target.layer)
        return resolve_target(self.classifier.module, target, shape)

    def plan(self, targets: Sequence[str | Target], restarts: int = 1, seed: int = 0) -> list[Row]:
        """Resolve targets and lay out one row per (target, restart)."""
        if not targets:
            raise DGNError("no targets given; write at least one, e.g. fc8:1")
        labels = [str(t) for t in targets]
        firsts, partners = [], []
        for text in targets:
            first, partner = split_pair(text)
            firsts.append(self.resolve(first))
            partners.append(self.resolve(partner) if partner is not None else None)
        return plan_rows(firsts, labels, restarts, seed, partners)
