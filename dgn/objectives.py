"""Objectives: one scalar per batch row, computed from the captured layer outputs.

An objective knows which layers it needs (``layers``) and evaluates a batch: ``objective(acts, params)``
gives a (B,) tensor, ``params`` being the optimised parameters (codes or images) for terms such as a
code penalty. Objectives compose: ``a + b``, ``a - b``, ``2.0 * a`` and ``-a`` are objectives too, and
any callable with a ``layers`` attribute can take part (see :func:`as_objective`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dgn.targets import Target, load_direction


class Objective:
    """Base of the composable objectives: subclasses set ``layers`` and implement ``__call__``."""

    layers: tuple[str, ...] = ()

    def __call__(self, acts: dict[str, torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __add__(self, other) -> Objective:
        return Sum(self, as_objective(other))

    def __sub__(self, other) -> Objective:
        return Sum(self, as_objective(other), subtract=True)

    def __mul__(self, factor: float) -> Objective:
        return Scaled(self, float(factor))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)


def as_objective(value) -> Objective:
    """An :class:`Objective` as it is; any callable ``f(acts, params) -> (B,)`` with a ``layers`` attribute,
    wrapped."""
    if isinstance(value, Objective):
        return value
    if callable(value) and hasattr(value, "layers"):
        return _Wrapped(value)
    raise TypeError(f"not an objective: {value!r} (needs __call__(acts, params) and a layers attribute)")


def _union(*layer_lists: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for layers in layer_lists for name in layers))


class _Wrapped(Objective):
    def __init__(self, function) -> None:
        self.function, self.layers = function, tuple(function.layers)

    def __call__(self, acts, params=None):
        return self.function(acts, params)


class Sum(Objective):
    """``left + right`` (or ``left - right``), row by row."""

    def __init__(self, left: Objective, right: Objective, subtract: bool = False) -> None:
        self.left, self.right, self.subtract = left, right, subtract
        self.layers = _union(left.layers, right.layers)

    def __call__(self, acts, params=None):
        a, b = self.left(acts, params), self.right(acts, params)
        return a - b if self.subtract else a + b


class Scaled(Objective):
    """``factor * inner``, row by row."""

    def __init__(self, inner: Objective, factor: float) -> None:
        self.inner, self.factor, self.layers = inner, factor, inner.layers

    def __call__(self, acts, params=None):
        return self.factor * self.inner(acts, params)


class TargetValues:
    """Each row's value of its own target from the captured outputs, with index tensors built once.

    Neurons are gathered in one indexing per layer; channels (``@mean``), whole layers (mean squared
    activation), class probabilities (softmax) and directions (dot product with a vector, at a position or
    averaged) are reduced per row.

    Args:
        targets: one resolved target per row (a neuron of a spatial layer needs a position).
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.batch = len(targets)
        neurons: dict[str, list[int]] = {}
        for row, target in enumerate(targets):
            if target.is_neuron:
                neurons.setdefault(target.layer, []).append(row)
        self._cpu = {
            layer: [torch.tensor(rows), torch.tensor([targets[r].unit for r in rows])]
            + ([torch.tensor([targets[r].position[0] for r in rows]), torch.tensor([targets[r].position[1] for r in rows])]
               if targets[rows[0]].position is not None else [])
            for layer, rows in neurons.items()
        }
        self._others = [(row, t) for row, t in enumerate(targets) if not t.is_neuron]
        self._vectors = {t.vector: load_direction(t.vector) for _, t in self._others if t.kind == "direction"}
        self._on: dict[torch.device, dict[str, list[torch.Tensor]]] = {}

    def gather(self, acts: dict[str, torch.Tensor], post_relu: bool = False) -> torch.Tensor:
        """(B,) values, row i's own target, differentiable; with ``post_relu`` the activations pass a ReLU first."""
        device = next(iter(acts.values())).device
        if device not in self._on:
            self._on[device] = {k: [t.to(device) for t in v] for k, v in self._cpu.items()}
        out = torch.zeros(self.batch, dtype=torch.float32, device=device)
        for layer, (rows, *where) in self._on[device].items():
            a = acts[layer]
            if (a.dim() == 2) != (len(where) == 1):
                raise ValueError(f"targets on {layer!r} must have a position exactly when the layer is spatial")
            out = out.index_put((rows,), a[(rows, *where)].float())
        if post_relu:
            out = F.relu(out)
        for row, target in self._others:
            a = acts[target.layer][row].float()
            out = out.index_put((torch.tensor([row], device=device),), self._reduce(F.relu(a) if post_relu else a,
                                                                                    target)[None])
        return out

    def _reduce(self, a: torch.Tensor, target: Target) -> torch.Tensor:
        """One row's activation (C,) or (C, H, W) -> its target's value."""
        if target.kind == "layer":
            return a.pow(2).mean()
        if target.kind == "unit":  # a channel: its mean over all positions
            return a[target.unit].mean()
        if target.kind == "prob":  # softmax over the units, at one place or averaged over all
            if a.dim() == 1:
                return torch.softmax(a, 0)[target.unit]
            if target.mean:
                return torch.softmax(a, 0)[target.unit].mean()
            return torch.softmax(a[:, target.position[0], target.position[1]], 0)[target.unit]
        vector = self._vectors[target.vector].to(a.device)
        if a.dim() == 1:
            return a @ vector
        if target.mean:
            return torch.einsum("chw,c->hw", a, vector).mean()
        return a[:, target.position[0], target.position[1]] @ vector


def balance_penalty(difference: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """|a - b| (``smoothing`` 0), or its smooth form sqrt(d^2 + delta^2) - delta with delta = ``smoothing``."""
    if smoothing <= 0:
        return difference.abs()
    return torch.sqrt(difference * difference + smoothing * smoothing) - smoothing


@dataclass(eq=False)
class UnitObjective(Objective):
    """Maximise one unit per row (the DGN-AM objective), or a pair of units (DGN-AM supplement S8, eq. 2).

    A row with a partner unit b maximises ``a + b - gamma * |a - b|``; every row also pays
    ``code_penalty * ||code||_2`` when that is set (the eq. 2 term lambda * ||h||; 0 by default,
    as act_max's decay already shrinks the code). With ``smoothing`` = delta > 0 the penalty is the
    smooth ``sqrt((a - b)^2 + delta^2) - delta``: the same for |a - b| >> delta, but near balance its
    gradient fades, so a balanced row pushes both units up instead of only the weaker one (with the plain
    |a - b| at gamma = 1 the objective is 2 min(a, b), whose gradient flips between the units each step).

    Args:
        targets: one resolved target per row.
        post_relu: maximise the post-ReLU value instead of the pre-ReLU one.
        partners: per row, a second target or None.
        gamma: weight of the balance penalty on pair rows.
        code_penalty: weight of the code's L2 norm.
        smoothing: width delta of the smooth balance penalty (0: eq. 2's |a - b| exactly).
    """

    targets: list[Target]
    post_relu: bool = False
    partners: list[Target | None] | None = None
    gamma: float = 1.0
    code_penalty: float = 0.0
    smoothing: float = 0.0
    layers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        partners = [p for p in (self.partners or []) if p is not None]
        self.layers = tuple(dict.fromkeys([t.layer for t in self.targets] + [p.layer for p in partners]))
        self._first = TargetValues(self.targets)
        self._second = TargetValues([p or t for p, t in zip(self.partners, self.targets)]) if partners else None
        self._has_partner = torch.tensor([p is not None for p in (self.partners or [None] * len(self.targets))])

    def __len__(self) -> int:
        return len(self.targets)

    def pair_values(self, acts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(a, b): each row's first unit and its partner's (b is a's value where a row has no partner)."""
        a = self._first.gather(acts, self.post_relu)
        return a, (self._second.gather(acts, self.post_relu) if self._second is not None else None)

    def __call__(self, acts: dict[str, torch.Tensor], codes: torch.Tensor | None = None) -> torch.Tensor:
        a, b = self.pair_values(acts)
        value = a
        if b is not None:
            has = self._has_partner.to(a.device)  # tiny; built once in __post_init__
            value = torch.where(has, a + b - self.gamma * balance_penalty(a - b, self.smoothing), a)
        if self.code_penalty and codes is not None:
            value = value - self.code_penalty * codes.flatten(1).float().norm(dim=1)
        return value

    def rows(self, index: Sequence[int]) -> UnitObjective:
        partners = [self.partners[i] for i in index] if self.partners else None
        return UnitObjective([self.targets[i] for i in index], self.post_relu, partners, self.gamma, self.code_penalty,
                             self.smoothing)


class UnitReference(Objective):
    """(B,) what a class-contrastive score subtracts from each row's unit (pair rows: 0).

    ``kind`` "contrast": the mean of the other units of the row's layer at its position; "log_softmax":
    their log-sum-exp, so ``unit - reference`` is the unit's log-probability among its layer's units.

    Args:
        targets: one resolved target per row.
        kind: "contrast" or "log_softmax".
        partners: per row, a second target or None (pair rows get no reference).
    """

    KINDS = ("contrast", "log_softmax")

    def __init__(self, targets: Sequence[Target], kind: str, partners: Sequence[Target | None] | None = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown reference {kind!r}; valid: {', '.join(self.KINDS)}")
        self.targets, self.kind = list(targets), kind
        self.partners = list(partners) if partners is not None else [None] * len(self.targets)
        by_layer: dict[str, list[int]] = {}
        for i, (target, partner) in enumerate(zip(self.targets, self.partners)):
            if partner is None:
                by_layer.setdefault(target.layer, []).append(i)
        self.layers = tuple(by_layer)
        # index tensors built once (moved to a device once), not on every step: rows, units, and ys, xs if spatial
        self._cpu = {
            layer: [torch.tensor(rows), torch.tensor([self.targets[i].unit for i in rows])]
            + ([torch.tensor([self.targets[i].position[0] for i in rows]),
                torch.tensor([self.targets[i].position[1] for i in rows])]
               if self.targets[rows[0]].position is not None else [])
            for layer, rows in by_layer.items()
        }
        self._on: dict[torch.device, dict[str, list[torch.Tensor]]] = {}

    def __call__(self, acts, params=None):
        device = next(iter(acts.values())).device
        if device not in self._on:
            self._on[device] = {k: [t.to(device) for t in v] for k, v in self._cpu.items()}
        out = torch.zeros(len(self.targets), dtype=torch.float32, device=device)
        for layer, (where, unit, *yx) in self._on[device].items():
            a = acts[layer].float()
            units = a[where] if a.dim() == 2 else a[where, :, yx[0], yx[1]]  # (rows, channels)
            if self.kind == "log_softmax":
                ref = torch.logsumexp(units, 1)
            else:
                own = units.gather(1, unit[:, None])[:, 0]
                ref = (units.sum(1) - own) / max(units.shape[1] - 1, 1)
            out = out.index_put((where,), ref)
        return out


class Diversity(Objective):
    """Lucid's diversity term, per row: minus ``weight`` times the mean cosine similarity of the row's Gram
    matrix with those of the other rows of its group (e.g. the restarts of one target), at each row's layer.

    The Gram matrix of a conv layer's (C, H, W) output is F F^T / (H W) with F its (C, HW) features; for a
    non-spatial layer a a^T, whose cosine similarity is cos(a_i, a_j)^2 (computed so, without the C x C
    matrix). A row alone in its group gets 0. Unlike every other objective this one couples rows: the rows
    of a group must run in one batch.

    Args:
        groups: one key per row; rows with equal keys push each other apart.
        layers: one layer per row (the layer whose features are compared).
        weight: the term's weight.
    """

    def __init__(self, groups: Sequence[str], layers: Sequence[str], weight: float = 1.0) -> None:
        if len(groups) != len(layers):
            raise ValueError(f"{len(groups)} groups for {len(layers)} layers")
        ids = {key: i for i, key in enumerate(dict.fromkeys(groups))}
        self.group = torch.tensor([ids[g] for g in groups])
        self.row_layers, self.weight = list(layers), float(weight)
        self.layers = tuple(dict.fromkeys(layers))

    def __call__(self, acts, params=None):
        device = next(iter(acts.values())).device
        group = self.group.to(device)
        out = torch.zeros(len(self.row_layers), dtype=torch.float32, device=device)
        for layer in self.layers:
            rows = torch.tensor([i for i, name in enumerate(self.row_layers) if name == layer], device=device)
            a = acts[layer][rows].float()
            if a.dim() == 2:
                sim = F.normalize(a, dim=1) @ F.normalize(a, dim=1).T
                sim = sim * sim
            else:
                features = a.flatten(2)
                gram = features @ features.transpose(1, 2) / features.shape[2]
                unit = F.normalize(gram.flatten(1), dim=1)
                sim = unit @ unit.T
            g = group[rows]
            same = (g[:, None] == g[None, :]) & ~torch.eye(len(rows), dtype=torch.bool, device=device)
            mean = (sim * same).sum(1) / same.sum(1).clamp_min(1)
            out = out.index_put((rows,), -self.weight * mean)
        return out


class FeatureAnchor(Objective):
    """Minus ``weight`` times the mean squared difference between a row's features at ``layer`` and that row's
    reference features (e.g. of the real image it started from), relative to the reference's mean square:
    feature accentuation's regulariser (Hamblin et al. 2024), which keeps an image's own lower-layer features
    while a target is pushed. Relative, so one weight means the same on layers and nets of any scale.

    Args:
        layer: the (canonical) layer compared.
        reference: (B, ...) the reference features, one row per batch row.
        weight: the term's weight.
    """

    def __init__(self, layer: str, reference: torch.Tensor, weight: float = 1.0) -> None:
        self.layer, self.reference, self.weight = layer, reference.detach().float(), float(weight)
        self.layers = (layer,)

    def __call__(self, acts, params=None):
        a, reference = acts[self.layer].float(), self.reference.to(acts[self.layer].device)
        scale = reference.pow(2).flatten(1).mean(1).clamp_min(1e-12)
        return -self.weight * (a - reference).pow(2).flatten(1).mean(1) / scale
