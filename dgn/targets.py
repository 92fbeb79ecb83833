"""Targets: which unit of which layer to maximise.

Forms: ``LAYER:UNIT`` for fc layers (``fc8:945``); ``LAYER:UNIT@Y,X`` for conv layers
(``conv5:12@6,6``). A conv target without a position means the spatial centre
(``(H - 1) // 2``: (6, 6) on CaffeNet's 13x13 conv5, as the original used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from torch import nn

from dgn.errors import DGNError
from dgn.layers import resolve_layer

_FORM = "LAYER:UNIT or LAYER:UNIT@Y,X (e.g. fc8:945 or conv5:12@6,6)"
_PATTERN = re.compile(r"^(?P<layer>[^:@\s]+):(?P<unit>-?\d+)(?:@(?P<y>-?\d+),(?P<x>-?\d+))?$")


@dataclass(frozen=True)
class Target:
    """One unit: ``layer`` (as written or canonical), channel/unit index, optional spatial position (y, x)."""

    layer: str
    unit: int
    position: tuple[int, int] | None = None

    def __str__(self) -> str:
        pos = f"@{self.position[0]},{self.position[1]}" if self.position is not None else ""
        return f"{self.layer}:{self.unit}{pos}"

    @property
    def slug(self) -> str:
        """A file-name-safe form, e.g. ``fc8_0945`` or ``conv5_0012_y06_x06``."""
        base = re.sub(r"[^A-Za-z0-9]+", "-", self.layer).strip("-") + f"_{self.unit:04d}"
        if self.position is not None:
            base += f"_y{self.position[0]:02d}_x{self.position[1]:02d}"
        return base


def parse_target(text: str) -> Target:
    """Parse ``LAYER:UNIT`` or ``LAYER:UNIT@Y,X``.

    Raises:
        DGNError: the string is not of that form.
    """
    match = _PATTERN.match(text.strip())
    if not match:
        raise DGNError(f"malformed target {text!r}; expected {_FORM}")
    unit = int(match["unit"])
    if unit < 0:
        raise DGNError(f"unit must be >= 0 in target {text!r}")
    position = None
    if match["y"] is not None:
        position = (int(match["y"]), int(match["x"]))
    return Target(match["layer"], unit, position)


def as_target(value: str | Target) -> Target:
    """Accept a :class:`Target` or its string form."""
    return value if isinstance(value, Target) else parse_target(value)


def resolve_target(model: nn.Module, target: str | Target, output_shape: tuple[int, ...]) -> Target:
    """Check a target against its layer's output shape (without batch) and fill in defaults.

    Returns:
        The target with the canonical layer name and, for spatial layers, an explicit position.

    Raises:
        DGNError: unknown layer, unit or position out of range, or a position on a non-spatial layer.
    """
    target = as_target(target)
    layer = resolve_layer(model, target.layer)
    channels = output_shape[0] if output_shape else 1
    if not 0 <= target.unit < channels:
        raise DGNError(f"unit {target.unit} out of range for layer {target.layer!r}: valid units are 0..{channels - 1}")
    spatial = output_shape[1:]
    if len(spatial) == 0:
        if target.position is not None:
            raise DGNError(f"layer {target.layer!r} has no spatial dimensions; write {target.layer}:{target.unit}")
        return replace(target, layer=layer)
    if len(spatial) != 2:
        raise DGNError(f"layer {target.layer!r} has output shape {output_shape}; only (C,) and (C, H, W) are supported")
    height, width = spatial
    position = target.position if target.position is not None else ((height - 1) // 2, (width - 1) // 2)
    y, x = position
    if not (0 <= y < height and 0 <= x < width):
        raise DGNError(
            f"position @{y},{x} out of range for layer {target.layer!r}: valid y 0..{height - 1}, x 0..{width - 1}"
        )
    return Target(layer, target.unit, (y, x))


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
