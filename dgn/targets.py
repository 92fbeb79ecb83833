"""Targets: what to maximise in which layer.

Forms (``LAYER`` a module name or alias, e.g. ``fc8``, ``conv5``, ``features.10``):

- ``LAYER:UNIT``: a neuron; on a conv layer the one at the spatial centre (``(H - 1) // 2``: (6, 6) on
  CaffeNet's 13x13 conv5, as the original used). ``LAYER:UNIT@Y,X``: the neuron at (Y, X).
- ``LAYER:UNIT@mean``: a channel, its mean over all positions.
- ``LAYER:layer``: the whole layer, the mean of its squared activations (DeepDream's objective).
- ``LAYER:prob=UNIT``: a class probability, the softmax of the layer's units (at the centre, ``@Y,X`` or
  averaged ``@mean`` on a conv layer) taken at UNIT, e.g. ``fc8:prob=945``.
- ``LAYER:dir=FILE``: a direction, the dot product of the layer's activation vector with the vector in
  FILE (``.npy``, or numbers separated by spaces, commas or newlines; as many as the layer has channels,
  e.g. a linear probe's weights or a difference of class means), at the centre, ``@Y,X`` or ``@mean``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dgn.errors import DGNError
from dgn.layers import resolve_layer

_FORM = ("LAYER:UNIT[@Y,X|@mean], LAYER:layer, LAYER:prob=UNIT or LAYER:dir=FILE[@Y,X|@mean] "
         "(e.g. fc8:945, conv5:12@6,6, conv5:12@mean, conv5:layer, fc8:prob=945, fc7:dir=probe.npy)")
_PATTERN = re.compile(r"^(?P<layer>[^:@\s]+):(?P<what>[^@]+?)(?:@(?P<where>[^@]+))?$")
_POSITION = re.compile(r"^(?P<y>-?\d+),(?P<x>-?\d+)$")
KINDS = ("unit", "layer", "direction", "prob")


@dataclass(frozen=True)
class Target:
    """What one row maximises.

    Attributes:
        layer: the layer as written, or canonical once resolved.
        unit: the channel / unit index (``kind`` "unit" or "prob"; -1 otherwise).
        position: (y, x) on a spatial layer; None on a non-spatial one, or when ``mean``.
        kind: "unit" (a neuron, or with ``mean`` a channel), "layer" (mean squared activation),
            "direction" (dot product with ``vector``) or "prob" (softmax over the units, at ``unit``).
        mean: average over all positions instead of taking one.
        vector: the direction's file.
    """

    layer: str
    unit: int = -1
    position: tuple[int, int] | None = None
    kind: str = "unit"
    mean: bool = False
    vector: str | None = None

    def __str__(self) -> str:
        if self.kind == "layer":
            return f"{self.layer}:layer"
        what = {"direction": f"dir={self.vector}", "prob": f"prob={self.unit}"}.get(self.kind, str(self.unit))
        where = "@mean" if self.mean else f"@{self.position[0]},{self.position[1]}" if self.position is not None else ""
        return f"{self.layer}:{what}{where}"

    @property
    def is_neuron(self) -> bool:
        """One unit at one place (what contrastive scores, pairs' read-outs and receptive fields need)."""
        return self.kind == "unit" and not self.mean

    @property
    def slug(self) -> str:
        """A file-name-safe form, e.g. ``fc8_0945``, ``conv5_0012_y06_x06``, ``conv5_0012_mean``, ``conv5_layer``."""
        base = re.sub(r"[^A-Za-z0-9]+", "-", self.layer).strip("-")
        if self.kind == "layer":
            return f"{base}_layer"
        if self.kind == "direction":
            base += "_dir-" + re.sub(r"[^A-Za-z0-9]+", "-", Path(self.vector or "").stem).strip("-")
        elif self.kind == "prob":
            base += f"_prob{self.unit:04d}"
        else:
            base += f"_{self.unit:04d}"
        if self.mean:
            base += "_mean"
        elif self.position is not None:
            base += f"_y{self.position[0]:02d}_x{self.position[1]:02d}"
        return base


def parse_target(text: str) -> Target:
    """Parse one of the forms in the module docstring.

    Raises:
        DGNError: the string is not of one of those forms.
    """
    match = _PATTERN.match(text.strip())
    if not match:
        raise DGNError(f"malformed target {text!r}; expected {_FORM}")
    layer, what, where = match["layer"], match["what"].strip(), match["where"]
    position, mean = None, False
    if where is not None:
        where = where.strip()
        found = _POSITION.match(where)
        if where == "mean":
            mean = True
        elif found:
            position = (int(found["y"]), int(found["x"]))
        else:
            raise DGNError(f"malformed position {where!r} in target {text!r}; expected {_FORM}")
    if what == "layer":
        if where is not None:
            raise DGNError(f"a whole-layer target takes no position: write {layer}:layer")
        return Target(layer, kind="layer")
    if what.startswith("prob="):
        if not re.fullmatch(r"\d+", what[5:]):
            raise DGNError(f"malformed target {text!r}; write {layer}:prob=UNIT with UNIT >= 0")
        return Target(layer, int(what[5:]), position, "prob", mean)
    if what.startswith("dir="):
        if not what[4:]:
            raise DGNError(f"target {text!r} names no direction file; write {layer}:dir=FILE")
        return Target(layer, -1, position, "direction", mean, what[4:])
    if not re.fullmatch(r"-?\d+", what):
        raise DGNError(f"malformed target {text!r}; expected {_FORM}")
    unit = int(what)
    if unit < 0:
        raise DGNError(f"unit must be >= 0 in target {text!r}")
    return Target(layer, unit, position, mean=mean)


def load_direction(path: str | Path) -> torch.Tensor:
    """A direction vector (float32, 1-D) from ``.npy`` or a text file of numbers."""
    path = Path(path)
    if not path.is_file():
        raise DGNError(f"direction file {path} does not exist")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            values = np.array([float(v) for v in re.split(r"[\s,]+", path.read_text().strip()) if v])
    except (ValueError, OSError) as err:
        raise DGNError(f"cannot read direction {path}: {err}") from None
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise DGNError(f"direction {path} must hold finite numbers, got {values.size} values")
    return torch.from_numpy(values.copy())


def as_target(value: str | Target) -> Target:
    """Accept a :class:`Target` or its string form."""
    return value if isinstance(value, Target) else parse_target(value)


def resolve_target(model: nn.Module, target: str | Target, output_shape: tuple[int, ...]) -> Target:
    """Check a target against its layer's output shape (without batch) and fill in defaults.

    Returns:
        The target with the canonical layer name and, for one place of a spatial layer, an explicit position
        (a ``@mean`` on a non-spatial layer is dropped: there is one place).

    Raises:
        DGNError: unknown layer, unit or position out of range, a position on a non-spatial layer, or a
            direction of the wrong length.
    """
    target = as_target(target)
    layer = resolve_layer(model, target.layer)
    channels = output_shape[0] if output_shape else 1
    spatial = output_shape[1:]
    if len(spatial) not in (0, 2):
        raise DGNError(f"layer {target.layer!r} has output shape {output_shape}; only (C,) and (C, H, W) are supported")
    if target.kind == "layer":
        return replace(target, layer=layer)
    if target.kind in ("unit", "prob") and not 0 <= target.unit < channels:
        raise DGNError(f"unit {target.unit} out of range for layer {target.layer!r}: valid units are 0..{channels - 1}")
    if target.kind == "direction":
        length = load_direction(target.vector).numel()
        if length != channels:
            raise DGNError(f"direction {target.vector} has {length} values but layer {target.layer!r} has "
                           f"{channels} channels")
    if len(spatial) == 0:
        if target.position is not None:
            what = str(replace(target, position=None))
            raise DGNError(f"layer {target.layer!r} has no spatial dimensions; write {what}")
        return replace(target, layer=layer, mean=False)
    if target.mean:
        return replace(target, layer=layer)
    height, width = spatial
    position = target.position if target.position is not None else ((height - 1) // 2, (width - 1) // 2)
    y, x = position
    if not (0 <= y < height and 0 <= x < width):
        raise DGNError(
            f"position @{y},{x} out of range for layer {target.layer!r}: valid y 0..{height - 1}, x 0..{width - 1}"
        )
    return replace(target, layer=layer, position=(y, x))


_RANGE = re.compile(r"^(?P<layer>[^:@\s]+):(?P<lo>\d+)-(?P<hi>\d+)(?P<pos>@-?\d+,-?\d+)?$")


def expand_targets(text: str) -> list[str]:
    """Expand the range form ``LAYER:A-B[@Y,X]`` into one target string per unit (inclusive).

    Any other string is returned as a one-element list (and validated later).
    """
    match = _RANGE.match(text.strip())
    if not match:
        return [text.strip()]
    lo, hi = int(match["lo"]), int(match["hi"])
    if hi < lo:
        raise DGNError(f"empty unit range in target {text!r}: {lo} > {hi}")
    return [f"{match['layer']}:{unit}{match['pos'] or ''}" for unit in range(lo, hi + 1)]


def split_pair(value: str | Target) -> tuple[str | Target, str | None]:
    """Split a two-neuron target ``A+B`` (e.g. ``fc8:1+fc8:3``) into its parts; others give (value, None).

    Raises:
        DGNError: more than two parts.
    """
    if isinstance(value, Target) or "+" not in value:
        return value, None
    parts = [p.strip() for p in value.split("+")]
    if len(parts) != 2 or not all(parts):
        raise DGNError(f"malformed pair {value!r}; expected A+B with two targets, e.g. fc8:1+fc8:3")
    return parts[0], parts[1]
