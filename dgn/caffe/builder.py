"""``build_module``: a deploy prototxt (plus optional weights) as an ``nn.Module`` following the blob DAG."""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from dgn.caffe.modules import (
    CaffeModule,
    CaffePool2d,
    _Concat,
    _Dropout,
    _Eltwise,
    _InnerProduct,
    _LRNWithinChannel,
    _Power,
    _Reshape,
    _Split,
    sanitize_name,
)
from dgn.caffe.net import _MAX_PARAM_ELEMENTS, CaffeLayer, CaffeNet
from dgn.caffe.read import _input_layer_shapes, _shape_tuple, read_caffemodel, read_prototxt
from dgn.caffe.state import load_into
from dgn.caffe.text import _as_list
from dgn.caffe.zoo_builders import ZOO_ARITY, ZOO_BUILDERS
from dgn.errors import DGNError

_DATA_TYPES = frozenset(
    {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "AnnotatedData", "VideoData"}
)
_SKIPPED_TYPES = frozenset(
    {"Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
     "SigmoidCrossEntropyLoss", "ContrastiveLoss", "Silence", "HDF5Output"}
)  # fmt: skip


def _pair(
    p: dict, name: str, h_name: str | None, w_name: str | None, default: int | None, where: str
) -> tuple[int, int]:
    """A 2-D (h, w) value from a repeated field ``name`` or from its ``*_h`` / ``*_w`` variants."""
    if h_name is not None and w_name is not None and (h_name in p or w_name in p):
        if h_name not in p or w_name not in p:
            if default is None:
                raise DGNError(f"{where}: {h_name} and {w_name} must be given together")
            return int(p.get(h_name, default)), int(p.get(w_name, default))
        return int(p[h_name]), int(p[w_name])
    vals = _as_list(p.get(name))
    if not vals:
        if default is None:
            raise DGNError(f"{where}: {name} is required")
        return default, default
    if len(vals) == 1:
        return int(vals[0]), int(vals[0])
    if len(vals) == 2:
        return int(vals[0]), int(vals[1])
    raise DGNError(f"{where}: {name} has {len(vals)} values; only 2-D layers are supported")


def _check_params(count: int, where: str) -> None:
    if count > _MAX_PARAM_ELEMENTS:
        raise DGNError(f"{where}: a {count:,}-element parameter is not plausible")


def _check_count(n: int, bounds: tuple[int, int | None], what: str, where: str) -> None:
    lo, hi = bounds
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
        raise DGNError(f"{where}: expects {want} {what}{'' if want == '1' else 's'}, has {n}")


def _build_layer(
    lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str
) -> tuple[nn.Module, list[tuple[int, ...]]]:
    """Make the module for one layer and compute its top shapes from its bottom shapes."""
    build = _BUILDERS.get(lay.type)
    if build is None:
        raise DGNError(
            f"{where}: layer type {lay.type!r} is not supported; supported types: {', '.join(SUPPORTED_LAYER_TYPES)}"
        )
    bottoms, tops = _ARITY.get(lay.type, ((1, 1), (1, 1)))
    _check_count(len(shapes), bottoms, "bottom", where)
    _check_count(len(lay.tops), tops, "top", where)
    return build(lay, shapes, where)


# One function per layer type: (layer, bottom shapes, where) -> (module, top shapes).
Built = tuple[nn.Module, list[tuple[int, ...]]]


def _convolution(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("convolution_param") or {}, shapes[0]
    if len(x) != 4:
        raise DGNError(f"{where}: only 2-D convolution on (N, C, H, W) blobs is supported; input is {x}")
    if c.get("axis", 1) != 1:
        raise DGNError(f"{where}: convolution axis {c.get('axis')} is not supported (only 1)")
    kernel = _pair(c, "kernel_size", "kernel_h", "kernel_w", None, where)
    stride = _pair(c, "stride", "stride_h", "stride_w", 1, where)
    pad = _pair(c, "pad", "pad_h", "pad_w", 0, where)
    dilation = _pair(c, "dilation", None, None, 1, where)
    out_ch = int(c.get("num_output", 0))
    group = int(c.get("group", 1))
    bias = bool(c.get("bias_term", True))
    in_ch = x[1]
    if out_ch <= 0 or group <= 0 or min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
        raise DGNError(f"{where}: num_output, group, kernel, stride and dilation must be positive")
    if in_ch % group or out_ch % group:
        raise DGNError(f"{where}: channels {in_ch} -> {out_ch} are not divisible by group {group}")
    _check_params(out_ch * (in_ch // group) * kernel[0] * kernel[1], where)
    ext = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    if lay.type == "Convolution":
        hw = [(x[2 + i] + 2 * pad[i] - ext[i]) // stride[i] + 1 for i in range(2)]
        mod: nn.Module = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation, group, bias)
    else:
        hw = [stride[i] * (x[2 + i] - 1) + ext[i] - 2 * pad[i] for i in range(2)]
        mod = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, pad, 0, group, bias, dilation)
    if min(hw) <= 0:
        raise DGNError(f"{where}: output would be empty for input {x}")
    return mod, [(x[0], out_ch, hw[0], hw[1])]


def _inner_product(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("inner_product_param") or {}, shapes[0]
    axis = int(c.get("axis", 1))
    axis = axis + len(x) if axis < 0 else axis
    if not 0 <= axis < len(x):
        raise DGNError(f"{where}: axis {c.get('axis')} out of range for input {x}")
    out_f = int(c.get("num_output", 0))
    if out_f <= 0:
        raise DGNError(f"{where}: num_output must be positive")
    in_f = math.prod(x[axis:])
    _check_params(in_f * out_f, where)
    return _InnerProduct(in_f, out_f, bool(c.get("bias_term", True)), axis), [x[:axis] + (out_f,)]


def _pooling(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("pooling_param") or {}, shapes[0]
    mode = c.get("pool", "MAX")
    if mode not in ("MAX", "AVE"):
        raise DGNError(f"{where}: pooling {mode!r} is not supported (MAX, AVE)")
    if len(x) != 4:
        raise DGNError(f"{where}: pooling needs an (N, C, H, W) input; got {x}")
    round_mode = c.get("round_mode", "CEIL")
    if round_mode not in ("CEIL", "FLOOR"):
        raise DGNError(f"{where}: round_mode {round_mode!r} must be CEIL or FLOOR")
    if c.get("global_pooling", False):
        if _pair(c, "pad", "pad_h", "pad_w", 0, where) != (0, 0):
            raise DGNError(f"{where}: global pooling needs pad 0")
        pool = CaffePool2d(mode, global_pooling=True)
    else:
        kernel = _pair(c, "kernel_size", "kernel_h", "kernel_w", None, where)
        stride = _pair(c, "stride", "stride_h", "stride_w", 1, where)
        pad = _pair(c, "pad", "pad_h", "pad_w", 0, where)
        if min(kernel) <= 0 or min(stride) <= 0:
            raise DGNError(f"{where}: kernel and stride must be positive")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise DGNError(f"{where}: pad {pad} must be smaller than kernel {kernel} (as in Caffe)")
        pool = CaffePool2d(mode, kernel, stride, pad, round_mode == "CEIL")
    oh, ow = pool.output_size(x[2], x[3])
    if oh <= 0 or ow <= 0:
        raise DGNError(f"{where}: output would be empty for input {x}")
    return pool, [(x[0], x[1], oh, ow)]


def _relu(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    slope = float((lay.params.get("relu_param") or {}).get("negative_slope", 0.0))
    return (nn.LeakyReLU(slope) if slope else nn.ReLU()), [shapes[0]]


def _lrn(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("lrn_param") or {}, shapes[0]
    size = int(c.get("local_size", 5))
    alpha, beta, k = float(c.get("alpha", 1.0)), float(c.get("beta", 0.75)), float(c.get("k", 1.0))
    if size <= 0 or size % 2 == 0:
        raise DGNError(f"{where}: LRN local_size must be odd and positive (got {size}), as in Caffe")
    if len(x) != 4:
        raise DGNError(f"{where}: LRN needs an (N, C, H, W) input; got {x}")
    region = c.get("norm_region", "ACROSS_CHANNELS")
    if region == "ACROSS_CHANNELS":
        return nn.LocalResponseNorm(size, alpha, beta, k), [x]
    if region == "WITHIN_CHANNEL":
        return _LRNWithinChannel(size, alpha, beta), [x]
    raise DGNError(f"{where}: norm_region {region!r} must be ACROSS_CHANNELS or WITHIN_CHANNEL")


def _softmax(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    x = shapes[0]
    axis = int((lay.params.get("softmax_param") or {}).get("axis", 1))
    if not -len(x) <= axis < len(x):
        raise DGNError(f"{where}: softmax axis {axis} out of range for input {x}")
    return nn.Softmax(dim=axis), [x]


def _dropout(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c = lay.params.get("dropout_param") or {}
    ratio = float(c.get("dropout_ratio", 0.5))
    if not 0.0 <= ratio < 1.0:
        raise DGNError(f"{where}: dropout_ratio {ratio} must be in [0, 1)")
    return (nn.Dropout(ratio) if c.get("scale_train", True) else _Dropout(ratio)), [shapes[0]]


def _reshape(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("reshape_param") or {}, shapes[0]
    dims = [int(d) for d in _as_list((c.get("shape") or {}).get("dim"))]
    axis, num_axes = int(c.get("axis", 0)), int(c.get("num_axes", -1))
    start = axis if axis >= 0 else axis + len(x) + 1
    if start == 0 and dims and dims[0] > 0 and dims[0] == x[0]:
        dims[0] = 0  # an explicit batch size equal to the input's: copy it, so any batch works
    mod = _Reshape(dims, axis, num_axes)
    return mod, [mod.target_shape(x)]


def _flatten(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("flatten_param") or {}, shapes[0]
    a, e = int(c.get("axis", 1)), int(c.get("end_axis", -1))
    if not (-len(x) <= a < len(x) and -len(x) <= e < len(x)) or e % len(x) < a % len(x):
        raise DGNError(f"{where}: flatten axis {a}..{e} does not fit input {x}")
    a, e = a % len(x), e % len(x)
    return nn.Flatten(a, e), [x[:a] + (math.prod(x[a : e + 1]),) + x[e + 1 :]]


def _concat(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c, x = lay.params.get("concat_param") or {}, shapes[0]
    axis = int(c["axis"]) if "axis" in c else int(c.get("concat_dim", 1))
    if not -len(x) <= axis < len(x):
        raise DGNError(f"{where}: concat axis {axis} out of range for input {x}")
    axis %= len(x)
    for s in shapes[1:]:
        if len(s) != len(x) or any(a != b for i, (a, b) in enumerate(zip(s, x)) if i != axis):
            raise DGNError(f"{where}: cannot concatenate shapes {shapes} along axis {axis}")
    return _Concat(axis), [x[:axis] + (sum(s[axis] for s in shapes),) + x[axis + 1 :]]


def _split(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    return _Split(len(lay.tops)), [shapes[0]] * len(lay.tops)


def _eltwise(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c = lay.params.get("eltwise_param") or {}
    op = c.get("operation", "SUM")
    coeffs = [float(v) for v in _as_list(c.get("coeff"))]
    if op not in ("SUM", "PROD", "MAX"):
        raise DGNError(f"{where}: eltwise operation {op!r} must be SUM, PROD or MAX")
    if coeffs and (op != "SUM" or len(coeffs) != len(shapes)):
        raise DGNError(f"{where}: coeff needs operation SUM and one value per bottom")
    if any(s != shapes[0] for s in shapes):
        raise DGNError(f"{where}: eltwise bottoms differ in shape: {shapes}")
    return _Eltwise(op, coeffs), [shapes[0]]


def _power(lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str) -> Built:
    c = lay.params.get("power_param") or {}
    return _Power(float(c.get("power", 1.0)), float(c.get("scale", 1.0)), float(c.get("shift", 0.0))), [shapes[0]]


def _elementwise(module: type[nn.Module]):
    return lambda lay, shapes, where: (module(), [shapes[0]])


_BUILDERS = {
    "Convolution": _convolution, "Deconvolution": _convolution, "InnerProduct": _inner_product,
    "Pooling": _pooling, "ReLU": _relu, "Sigmoid": _elementwise(nn.Sigmoid), "TanH": _elementwise(nn.Tanh),
    "LRN": _lrn, "Softmax": _softmax, "Dropout": _dropout, "Reshape": _reshape, "Flatten": _flatten,
    "Concat": _concat, "Split": _split, "Eltwise": _eltwise, "Power": _power, **ZOO_BUILDERS,
}  # fmt: skip
# (min, max) bottoms and tops where a type takes other than exactly one of each; None: no upper bound.
_ARITY = {"Concat": ((1, None), (1, 1)), "Eltwise": ((1, None), (1, 1)), "Split": ((1, 1), (1, None)), **ZOO_ARITY}
SUPPORTED_LAYER_TYPES: tuple[str, ...] = ("Input", *_BUILDERS)


def _rule_met(rule: dict, phase: str) -> bool:
    # Default NetState: level 0, no stages.
    if "phase" in rule and rule["phase"] != phase:
        return False
    if "min_level" in rule and 0 < int(rule["min_level"]):
        return False
    if "max_level" in rule and 0 > int(rule["max_level"]):
        return False
    return not _as_list(rule.get("stage"))


def _included(lay: CaffeLayer, phase: str) -> bool:
    """Caffe's StateMeetsRule: include rules (any met) or, without them, no exclude rule met."""
    include = [r for r in _as_list(lay.params.get("include")) if isinstance(r, dict)]
    exclude = [r for r in _as_list(lay.params.get("exclude")) if isinstance(r, dict)]
    if include:
        return any(_rule_met(r, phase) for r in include)
    return not any(_rule_met(r, phase) for r in exclude)


def _net_inputs(net: CaffeNet, layers: list[CaffeLayer],
                input_shape: tuple[int, ...] | dict[str, tuple[int, ...]] | None) -> dict[str, tuple[int, ...]]:
    """The net's inputs and their shapes: declared inputs, Input layers, else data layers' first tops;
    ``input_shape`` overrides them."""
    input_layer_tops = {t for lay in net.layers if lay.type == "Input" for t in lay.tops}
    inputs: dict[str, tuple[int, ...]] = {k: v for k, v in net.inputs.items() if k not in input_layer_tops}
    data_tops: list[str] = []
    for lay in layers:
        if lay.type == "Input":
            declared = _input_layer_shapes(lay)
            for top in lay.tops:
                inputs[top] = declared.get(top, ())
        elif lay.type in _DATA_TYPES and lay.tops:
            data_tops.append(lay.tops[0])
    if not inputs:
        for top in data_tops:
            inputs[top] = ()
    if isinstance(input_shape, dict):
        unknown = [k for k in input_shape if k not in inputs]
        if unknown:
            raise DGNError(f"input_shape names {unknown}, but the net's inputs are {list(inputs)}")
        for k, v in input_shape.items():
            inputs[k] = _shape_tuple(v, f"input_shape[{k!r}]")
    elif input_shape is not None:
        if len(inputs) != 1:
            raise DGNError(f"net has inputs {list(inputs)}: give input_shape as a dict by name")
        inputs[next(iter(inputs))] = _shape_tuple(input_shape, "input_shape")
    for k, v in inputs.items():
        if not v:
            raise DGNError(f"no shape for net input {k!r}: pass input_shape=(N, C, H, W)")
        if min(v) <= 0:
            raise DGNError(f"net input {k!r} has shape {v}; every dimension must be positive")
    return inputs


def build_module(
    prototxt: str | Path | CaffeNet,
    caffemodel: str | Path | CaffeNet | None = None,
    phase: str = "TEST",
    input_shape: tuple[int, ...] | dict[str, tuple[int, ...]] | None = None,
    strict: bool = True,
) -> CaffeModule:
    """Build a PyTorch module from a Caffe net description, optionally with Caffe weights.

    Layers excluded in ``phase`` are skipped; so are data, loss and accuracy layers, whose
    first data top becomes a net input (give its shape with ``input_shape``). Submodules are
    named after the Caffe layers (see :func:`sanitize_name`; ``module.caffe_names`` maps them).
    Without ``caffemodel`` the weights keep PyTorch's random initialisation. The module is
    returned in eval mode for ``phase="TEST"``. A Reshape whose explicit first dimension equals
    the declared batch size copies the batch size instead, so any batch size runs.

    Args:
        prototxt: a ``.prototxt`` path, or a :class:`CaffeNet` already read.
        caffemodel: a ``.caffemodel`` path or :class:`CaffeNet` with weights, matched by layer name.
        phase: ``"TEST"`` or ``"TRAIN"``; decides include/exclude rules.
        input_shape: shape of the single input (or of the data layer's first top), or a dict of
            shapes by input name; overrides the shapes declared in the prototxt.
        strict: passed to :func:`load_into`.

    Returns:
        The :class:`CaffeModule`; ``load_report`` holds the :class:`LoadReport` when weights were loaded.

    Raises:
        DGNError: unsupported layer types (naming the layer and listing supported types), bad
            parameters, missing blobs, weight shape mismatches.
    """
    net = prototxt if isinstance(prototxt, CaffeNet) else read_prototxt(prototxt)
    phase = str(phase).upper()
    if phase not in ("TRAIN", "TEST"):
        raise DGNError(f"phase must be 'TRAIN' or 'TEST', not {phase!r}")
    layers = [lay for lay in net.layers if _included(lay, phase)]

    inputs = _net_inputs(net, layers, input_shape)

    shapes: dict[str, tuple[int, ...]] = dict(inputs)
    modules: dict[str, nn.Module] = {}
    names: dict[str, str] = {}
    steps: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    reserved = set(dir(nn.Module)) | {"net_name", "input_shapes", "input_names", "caffe_names",
                                      "blob_shapes", "load_report", "output_name", "forward"}  # fmt: skip
    for lay in layers:
        where = f"layer {lay.name!r} ({lay.type})"
        if lay.type == "Input" or lay.type in _DATA_TYPES or lay.type in _SKIPPED_TYPES:
            continue
        missing = [b for b in lay.bottoms if b not in shapes]
        if missing:
            raise DGNError(f"{where}: bottom blob(s) {missing} are produced by no earlier layer or input")
        mod, out_shapes = _build_layer(lay, [shapes[b] for b in lay.bottoms], where)
        key = sanitize_name(lay.name)
        base, n = key, 1
        while key in modules or key in reserved:
            n += 1
            key = f"{base}_{n}"
        modules[key] = mod
        names[lay.name] = key
        steps.append((key, tuple(lay.bottoms), tuple(lay.tops)))
        shapes.update(zip(lay.tops, out_shapes))

    module = CaffeModule(net.name, inputs, steps, modules, names, shapes)
    if caffemodel is not None:
        weights = caffemodel if isinstance(caffemodel, CaffeNet) else read_caffemodel(caffemodel)
        module.load_report = load_into(module, weights, module.caffe_names, strict=strict)
    return module.train(phase == "TRAIN")


