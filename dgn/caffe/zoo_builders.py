"""Builders for the model-zoo layer types (BatchNorm, Scale, Bias, PReLU, ELU, AbsVal, BNLL, Exp, Log,
Threshold, Crop, Slice, Tile, Reduction, ArgMax): each takes (layer, bottom shapes, where) and returns
(module, top shapes), checking the layer's parameters as Caffe's ``LayerSetUp`` / ``Reshape`` do."""

from __future__ import annotations

import math

import torch
from torch import nn

from dgn.caffe.net import _MAX_PARAM_ELEMENTS, CaffeLayer
from dgn.caffe.text import _as_list
from dgn.caffe.zoo_modules import (
    _BNLL,
    CaffeBatchNorm,
    CaffeBias,
    CaffeScale,
    _AbsVal,
    _ArgMax,
    _Crop,
    _Exp,
    _Log,
    _Reduction,
    _Slice,
    _Threshold,
    _Tile,
)
from dgn.errors import DGNError

Shapes = list[tuple[int, ...]]
Built = tuple[nn.Module, Shapes]


def _axis(value: object, ndim: int, where: str, name: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: -ndim <= axis < ndim, negative counting from the end."""
    a = int(value)  # type: ignore[call-overload]
    if not -ndim <= a < ndim:
        raise DGNError(f"{where}: {name} {a} is out of range for a {ndim}-axis input")
    return a % ndim


def _fill(p: nn.Parameter, filler: dict | None) -> None:
    """Initialise ``p`` from a Caffe filler (constant, uniform, gaussian); others keep its default."""
    if not filler:
        return
    kind = filler.get("type", "constant")
    with torch.no_grad():
        if kind == "constant":
            p.fill_(float(filler.get("value", 0.0)))
        elif kind == "uniform":
            p.uniform_(float(filler.get("min", 0.0)), float(filler.get("max", 1.0)))
        elif kind == "gaussian":
            p.normal_(float(filler.get("mean", 0.0)), float(filler.get("std", 1.0)))


def _blob_span(
    c: dict, x: tuple[int, ...], second: tuple[int, ...] | None, where: str
) -> tuple[int, tuple[int, ...]]:
    """Where a Scale/Bias blob sits on x: (first axis, blob shape), from axis/num_axes or the second bottom."""
    axis = _axis(c.get("axis", 1), len(x), where)
    if second is None:
        num_axes = int(c.get("num_axes", 1))
        end = len(x) if num_axes == -1 else axis + num_axes
        if num_axes < -1 or end > len(x):
            raise DGNError(f"{where}: num_axes {num_axes} from axis {axis} does not fit input {x}")
        second = x[axis:end]
    if not second:
        return 0, ()  # a scalar applies to every element
    if x[axis : axis + len(second)] != tuple(second):
        raise DGNError(f"{where}: shape {tuple(second)} does not match input {x} from axis {axis}")
    if math.prod(second) > _MAX_PARAM_ELEMENTS:
        raise DGNError(f"{where}: a {math.prod(second):,}-element parameter is not plausible")
    return axis, tuple(second)


def _batch_norm(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("batch_norm_param") or {}, shapes[0]
    if not x:
        raise DGNError(f"{where}: BatchNorm needs an input with at least one axis")
    eps = float(c.get("eps", 1e-5))
    if not eps >= 0:
        raise DGNError(f"{where}: eps {eps} must not be negative")
    use_global = bool(c["use_global_stats"]) if "use_global_stats" in c else None
    channels = 1 if len(x) == 1 else x[1]
    return CaffeBatchNorm(channels, eps, use_global, float(c.get("moving_average_fraction", 0.999))), [x]


def _scale(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("scale_param") or {}, shapes[0]
    second = shapes[1] if len(shapes) > 1 else None
    axis, shape = _blob_span(c, x, second, where)
    mod = CaffeScale(axis, None if second is not None else shape, shape if c.get("bias_term", False) else None)
    if mod.weight is not None:
        _fill(mod.weight, c.get("filler"))  # default: constant 1
    if mod.bias is not None:
        _fill(mod.bias, c.get("bias_filler"))  # default: constant 0
    return mod, [x]


def _bias(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("bias_param") or {}, shapes[0]
    second = shapes[1] if len(shapes) > 1 else None
    axis, shape = _blob_span(c, x, second, where)
    mod = CaffeBias(axis, None if second is not None else shape)
    if mod.bias is not None:
        _fill(mod.bias, c.get("filler"))
    return mod, [x]


def _prelu(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("prelu_param") or {}, shapes[0]
    if len(x) < 2:
        raise DGNError(f"{where}: PReLU needs an input with at least 2 axes; got {x}")
    mod = nn.PReLU(1 if c.get("channel_shared", False) else x[1], init=0.25)
    _fill(mod.weight, c.get("filler"))
    return mod, [x]


def _elu(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    return nn.ELU(float((lay.params.get("elu_param") or {}).get("alpha", 1.0))), [shapes[0]]


def _base_scale_shift(lay: CaffeLayer, key: str, where: str) -> tuple[float, float, float]:
    c = lay.params.get(key) or {}
    base, scale, shift = float(c.get("base", -1.0)), float(c.get("scale", 1.0)), float(c.get("shift", 0.0))
    if base != -1 and not (0 < base < math.inf):
        raise DGNError(f"{where}: base {base} must be positive (or -1 for e)")
    return base, scale, shift


def _exp(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    return _Exp(*_base_scale_shift(lay, "exp_param", where)), [shapes[0]]


def _log(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    base, scale, shift = _base_scale_shift(lay, "log_param", where)
    if base == 1:
        raise DGNError(f"{where}: base 1 has no logarithm")
    return _Log(base, scale, shift), [shapes[0]]


def _threshold(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    return _Threshold(float((lay.params.get("threshold_param") or {}).get("threshold", 0.0))), [shapes[0]]


def _crop(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, (x, like) = lay.params.get("crop_param") or {}, shapes
    axis = _axis(c.get("axis", 2), len(x), where)
    given = [int(o) for o in _as_list(c.get("offset"))]
    n = len(x) - axis
    if len(given) > 1 and len(given) != n:
        raise DGNError(f"{where}: {len(given)} offsets for the {n} axes from axis {axis} on")
    offsets = given * n if len(given) == 1 else given or [0] * n
    if len(like) < len(x):
        raise DGNError(f"{where}: the reference input {like} has fewer axes than the input {x}")
    for i, off in enumerate(offsets):
        if off + like[axis + i] > x[axis + i]:
            raise DGNError(f"{where}: cropping axis {axis + i} of {x} to {like[axis + i]} at offset {off} "
                           "runs past its end")
    return _Crop(axis, offsets), [x[:axis] + tuple(like[axis : len(x)])]


def _slice(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("slice_param") or {}, shapes[0]
    if "axis" in c and "slice_dim" in c:
        raise DGNError(f"{where}: give axis or slice_dim, not both")
    axis = _axis(c.get("slice_dim", c.get("axis", 1)), len(x), where)
    points = [int(p) for p in _as_list(c.get("slice_point"))]
    if points and len(points) != len(lay.tops) - 1:
        raise DGNError(f"{where}: {len(points)} slice points for {len(lay.tops)} tops (need one fewer)")
    mod = _Slice(axis, points, len(lay.tops))
    try:
        sizes = mod.sizes(x[axis])
    except DGNError as e:
        raise DGNError(f"{where}: {e}") from None
    return mod, [x[:axis] + (s,) + x[axis + 1 :] for s in sizes]


def _tile(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("tile_param") or {}, shapes[0]
    axis = _axis(c.get("axis", 1), len(x), where)
    tiles = int(c.get("tiles", 0))
    if tiles <= 0:
        raise DGNError(f"{where}: tiles must be given and positive")
    if math.prod(x) * tiles > _MAX_PARAM_ELEMENTS:
        raise DGNError(f"{where}: {tiles} tiles of {x} are not plausible")
    return _Tile(axis, tiles), [x[:axis] + (x[axis] * tiles,) + x[axis + 1 :]]


def _reduction(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("reduction_param") or {}, shapes[0]
    op = c.get("operation", "SUM")
    if op not in ("SUM", "ASUM", "SUMSQ", "MEAN"):
        raise DGNError(f"{where}: reduction operation {op!r} must be SUM, ASUM, SUMSQ or MEAN")
    axis = _axis(c.get("axis", 0), len(x), where)
    return _Reduction(op, axis, float(c.get("coeff", 1.0))), [x[:axis]]


def _argmax(lay: CaffeLayer, shapes: Shapes, where: str) -> Built:
    c, x = lay.params.get("argmax_param") or {}, shapes[0]
    top_k, out_max_val = int(c.get("top_k", 1)), bool(c.get("out_max_val", False))
    if not x or top_k < 1:
        raise DGNError(f"{where}: ArgMax needs top_k >= 1 and an input with at least one axis")
    if "axis" in c:
        axis = _axis(c["axis"], len(x), where)
        if top_k > x[axis]:
            raise DGNError(f"{where}: top_k {top_k} exceeds axis {axis} of input {x}")
        return _ArgMax(top_k, out_max_val, axis), [x[:axis] + (top_k,) + x[axis + 1 :]]
    if top_k > math.prod(x[1:]):
        raise DGNError(f"{where}: top_k {top_k} exceeds the {math.prod(x[1:])} values per example of {x}")
    out = (x[0], 2 if out_max_val else 1, top_k) + (1,) * (max(len(x), 3) - 3)
    return _ArgMax(top_k, out_max_val, None), [out]


def _same_shape(module: type[nn.Module]):
    return lambda lay, shapes, where: (module(), [shapes[0]])


ZOO_BUILDERS = {
    "BatchNorm": _batch_norm, "Scale": _scale, "Bias": _bias, "PReLU": _prelu, "ELU": _elu,
    "AbsVal": _same_shape(_AbsVal), "BNLL": _same_shape(_BNLL), "Exp": _exp, "Log": _log,
    "Threshold": _threshold, "Crop": _crop, "Slice": _slice, "Tile": _tile, "Reduction": _reduction,
    "ArgMax": _argmax,
}  # fmt: skip
# (min, max) bottoms and tops where a type takes other than exactly one of each; None: no upper bound.
ZOO_ARITY = {
    "Scale": ((1, 2), (1, 1)), "Bias": ((1, 2), (1, 1)), "Crop": ((2, 2), (1, 1)), "Slice": ((1, 1), (1, None)),
}  # fmt: skip
