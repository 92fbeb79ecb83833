"""Read Caffe nets without Caffe or compiled protobuf, and rebuild them as PyTorch modules.

* ``.caffemodel`` files (binary ``NetParameter``) are decoded by a small protobuf wire-format
  reader written here. Both the current format (``layer`` = 100, string types, ``BlobShape``)
  and the deprecated V1 format (``layers`` = 2, enum types, legacy num/channels/height/width
  blob shapes) are read; a V0 layer nested in a V1 layer is converted too.
* ``.prototxt`` files (protobuf text format) are parsed by a general tokenizer into nested dicts.
* :func:`build_module` turns a deploy prototxt (plus optional weights) into an ``nn.Module``
  whose submodules carry the Caffe layer names and whose forward follows the blob DAG.

Field numbers follow BVLC ``caffe.proto``. Bad, truncated or hostile files raise
:class:`~dgn.errors.DGNError`; nothing is ever executed or unpickled.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgn.errors import DGNError

__all__ = [
    "SUPPORTED_LAYER_TYPES",
    "CaffeLayer",
    "CaffeModule",
    "CaffeNet",
    "CaffePool2d",
    "LoadReport",
    "build_module",
    "caffe_state_dict",
    "inspect_caffemodel",
    "load_into",
    "parse_prototxt_text",
    "read_caffemodel",
    "read_prototxt",
    "sanitize_name",
]

_MAX_DEPTH = 64  # nesting limit for messages (binary and text)
_MAX_AXES = 32  # Caffe's kMaxBlobAxes
_MAX_PARAM_ELEMENTS = 2**31  # refuse to allocate a single layer parameter larger than this


# ---------------------------------------------------------------------------------------------
# Public data classes
# ---------------------------------------------------------------------------------------------


@dataclass
class CaffeLayer:
    """One Caffe layer.

    ``type`` is the modern string name (V1 ``CONVOLUTION`` becomes ``"Convolution"``).
    ``params`` holds every other field of the layer message as nested dicts (for example
    ``params["convolution_param"]["num_output"]``, ``params["include"]``); enum values are
    their names (``"MAX"``, ``"TEST"``).
    """

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    blobs: list[np.ndarray] = field(default_factory=list)
    params: dict = field(default_factory=dict)


@dataclass
class CaffeNet:
    """A Caffe net: its name, its layers in file order, and its declared input shapes."""

    name: str
    layers: list[CaffeLayer]
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def layer(self, name: str) -> CaffeLayer:
        """Return the layer called ``name``.

        Raises:
            DGNError: no layer has that name.
        """
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise DGNError(f"net {self.name!r} has no layer {name!r}; layers: {[x.name for x in self.layers]}")


# ---------------------------------------------------------------------------------------------
# Message schemas (the subset of caffe.proto that matters for reading nets and weights)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    num: int
    name: str
    kind: str  # int, uint, bool, enum, float, double, string, msg, floats, doubles
    repeated: bool = False
    sub: Any = None  # _Msg for kind "msg", dict[int, str] for kind "enum"


class _Msg:
    def __init__(self, name: str, *fields: _Field) -> None:
        self.name = name
        self.by_num = {f.num: f for f in fields}
        self.by_name = {f.name: f for f in fields}


def _f(num: int, name: str, kind: str, repeated: bool = False, sub: Any = None) -> _Field:
    return _Field(num, name, kind, repeated, sub)


_PHASE = {0: "TRAIN", 1: "TEST"}
_ENGINE = {0: "DEFAULT", 1: "CAFFE", 2: "CUDNN"}
_POOL = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}
_ROUND = {0: "CEIL", 1: "FLOOR"}
_NORM_REGION = {0: "ACROSS_CHANNELS", 1: "WITHIN_CHANNEL"}
_ELTWISE_OP = {0: "PROD", 1: "SUM", 2: "MAX"}
_SHARE_MODE = {0: "STRICT", 1: "PERMISSIVE"}
_V1_TYPE = {
    0: "NONE", 1: "ACCURACY", 2: "BNLL", 3: "CONCAT", 4: "CONVOLUTION", 5: "DATA", 6: "DROPOUT",
    7: "EUCLIDEAN_LOSS", 8: "FLATTEN", 9: "HDF5_DATA", 10: "HDF5_OUTPUT", 11: "IM2COL",
    12: "IMAGE_DATA", 13: "INFOGAIN_LOSS", 14: "INNER_PRODUCT", 15: "LRN",
    16: "MULTINOMIAL_LOGISTIC_LOSS", 17: "POOLING", 18: "RELU", 19: "SIGMOID", 20: "SOFTMAX",
    21: "SOFTMAX_LOSS", 22: "SPLIT", 23: "TANH", 24: "WINDOW_DATA", 25: "ELTWISE", 26: "POWER",
    27: "SIGMOID_CROSS_ENTROPY_LOSS", 28: "HINGE_LOSS", 29: "MEMORY_DATA", 30: "ARGMAX",
    31: "THRESHOLD", 32: "DUMMY_DATA", 33: "SLICE", 34: "MVN", 35: "ABSVAL", 36: "SILENCE",
    37: "CONTRASTIVE_LOSS", 38: "EXP", 39: "DECONVOLUTION",
}  # fmt: skip
# Caffe's own V1 -> string upgrade table (upgrade_proto.cpp UpgradeV1LayerType).
_V1_TO_NEW = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col", "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN", "POOLING": "Pooling",
    "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}  # fmt: skip
# V0 (pre-2014) string types, from upgrade_proto.cpp UpgradeV0LayerType.
_V0_TO_NEW = {
    "accuracy": "Accuracy", "bnll": "BNLL", "concat": "Concat", "conv": "Convolution",
    "data": "Data", "dropout": "Dropout", "euclidean_loss": "EuclideanLoss", "flatten": "Flatten",
    "hdf5_data": "HDF5Data", "hdf5_output": "HDF5Output", "im2col": "Im2col", "images": "ImageData",
    "infogain_loss": "InfogainLoss", "innerproduct": "InnerProduct", "lrn": "LRN",
    "multinomial_logistic_loss": "MultinomialLogisticLoss", "pool": "Pooling", "relu": "ReLU",
    "sigmoid": "Sigmoid", "softmax": "Softmax", "softmax_loss": "SoftmaxWithLoss", "split": "Split",
    "tanh": "TanH", "window_data": "WindowData",
}  # fmt: skip

_BLOB_SHAPE = _Msg("BlobShape", _f(1, "dim", "int", True))
_BLOB = _Msg(
    "BlobProto",
    _f(1, "num", "int"), _f(2, "channels", "int"), _f(3, "height", "int"), _f(4, "width", "int"),
    _f(5, "data", "floats", True), _f(7, "shape", "msg", sub=_BLOB_SHAPE),
    _f(8, "double_data", "doubles", True),
)  # fmt: skip
_RULE = _Msg(
    "NetStateRule",
    _f(1, "phase", "enum", sub=_PHASE), _f(2, "min_level", "int"), _f(3, "max_level", "int"),
    _f(4, "stage", "string", True), _f(5, "not_stage", "string", True),
)  # fmt: skip
_PARAM_SPEC = _Msg(
    "ParamSpec",
    _f(1, "name", "string"), _f(2, "share_mode", "enum", sub=_SHARE_MODE),
    _f(3, "lr_mult", "float"), _f(4, "decay_mult", "float"),
)  # fmt: skip
_CONV = _Msg(
    "ConvolutionParameter",
    _f(1, "num_output", "uint"), _f(2, "bias_term", "bool"), _f(3, "pad", "uint", True),
    _f(4, "kernel_size", "uint", True), _f(5, "group", "uint"), _f(6, "stride", "uint", True),
    _f(9, "pad_h", "uint"), _f(10, "pad_w", "uint"), _f(11, "kernel_h", "uint"),
    _f(12, "kernel_w", "uint"), _f(13, "stride_h", "uint"), _f(14, "stride_w", "uint"),
    _f(15, "engine", "enum", sub=_ENGINE), _f(16, "axis", "int"), _f(17, "force_nd_im2col", "bool"),
    _f(18, "dilation", "uint", True),
)  # fmt: skip
_POOLING = _Msg(
    "PoolingParameter",
    _f(1, "pool", "enum", sub=_POOL), _f(2, "kernel_size", "uint"), _f(3, "stride", "uint"),
    _f(4, "pad", "uint"), _f(5, "kernel_h", "uint"), _f(6, "kernel_w", "uint"),
    _f(7, "stride_h", "uint"), _f(8, "stride_w", "uint"), _f(9, "pad_h", "uint"),
    _f(10, "pad_w", "uint"), _f(11, "engine", "enum", sub=_ENGINE), _f(12, "global_pooling", "bool"),
    _f(13, "round_mode", "enum", sub=_ROUND),
)  # fmt: skip
_LRN = _Msg(
    "LRNParameter",
    _f(1, "local_size", "uint"), _f(2, "alpha", "float"), _f(3, "beta", "float"),
    _f(4, "norm_region", "enum", sub=_NORM_REGION), _f(5, "k", "float"),
    _f(6, "engine", "enum", sub=_ENGINE),
)  # fmt: skip
_IP = _Msg(
    "InnerProductParameter",
    _f(1, "num_output", "uint"), _f(2, "bias_term", "bool"), _f(5, "axis", "int"),
    _f(6, "transpose", "bool"),
)  # fmt: skip
_RELU = _Msg("ReLUParameter", _f(1, "negative_slope", "float"), _f(2, "engine", "enum", sub=_ENGINE))
_DROPOUT = _Msg("DropoutParameter", _f(1, "dropout_ratio", "float"), _f(2, "scale_train", "bool"))
_RESHAPE = _Msg(
    "ReshapeParameter",
    _f(1, "shape", "msg", sub=_BLOB_SHAPE), _f(2, "axis", "int"), _f(3, "num_axes", "int"),
)  # fmt: skip
_CONCAT = _Msg("ConcatParameter", _f(1, "concat_dim", "uint"), _f(2, "axis", "int"))
_SOFTMAX = _Msg("SoftmaxParameter", _f(1, "engine", "enum", sub=_ENGINE), _f(2, "axis", "int"))
_ELTWISE = _Msg(
    "EltwiseParameter",
    _f(1, "operation", "enum", sub=_ELTWISE_OP), _f(2, "coeff", "float", True),
    _f(3, "stable_prod_grad", "bool"),
)  # fmt: skip
_FLATTEN = _Msg("FlattenParameter", _f(1, "axis", "int"), _f(2, "end_axis", "int"))
_POWER = _Msg("PowerParameter", _f(1, "power", "float"), _f(2, "scale", "float"), _f(3, "shift", "float"))
_INPUT = _Msg("InputParameter", _f(1, "shape", "msg", True, _BLOB_SHAPE))

_LAYER = _Msg(
    "LayerParameter",
    _f(1, "name", "string"), _f(2, "type", "string"), _f(3, "bottom", "string", True),
    _f(4, "top", "string", True), _f(5, "loss_weight", "float", True),
    _f(6, "param", "msg", True, _PARAM_SPEC), _f(7, "blobs", "msg", True, _BLOB),
    _f(8, "include", "msg", True, _RULE), _f(9, "exclude", "msg", True, _RULE),
    _f(10, "phase", "enum", sub=_PHASE), _f(11, "propagate_down", "bool", True),
    _f(104, "concat_param", "msg", sub=_CONCAT), _f(106, "convolution_param", "msg", sub=_CONV),
    _f(108, "dropout_param", "msg", sub=_DROPOUT), _f(110, "eltwise_param", "msg", sub=_ELTWISE),
    _f(117, "inner_product_param", "msg", sub=_IP), _f(118, "lrn_param", "msg", sub=_LRN),
    _f(121, "pooling_param", "msg", sub=_POOLING), _f(122, "power_param", "msg", sub=_POWER),
    _f(123, "relu_param", "msg", sub=_RELU), _f(125, "softmax_param", "msg", sub=_SOFTMAX),
    _f(133, "reshape_param", "msg", sub=_RESHAPE), _f(135, "flatten_param", "msg", sub=_FLATTEN),
    _f(143, "input_param", "msg", sub=_INPUT),
)  # fmt: skip
_V0_LAYER = _Msg(
    "V0LayerParameter",
    _f(1, "name", "string"), _f(2, "type", "string"), _f(3, "num_output", "uint"),
    _f(4, "biasterm", "bool"), _f(7, "pad", "uint"), _f(8, "kernelsize", "uint"),
    _f(9, "group", "uint"), _f(10, "stride", "uint"), _f(11, "pool", "enum", sub=_POOL),
    _f(12, "dropout_ratio", "float"), _f(13, "local_size", "uint"), _f(14, "alpha", "float"),
    _f(15, "beta", "float"), _f(22, "k", "float"), _f(50, "blobs", "msg", True, _BLOB),
)  # fmt: skip
_V1_LAYER = _Msg(
    "V1LayerParameter",
    _f(1, "layer", "msg", sub=_V0_LAYER), _f(2, "bottom", "string", True),
    _f(3, "top", "string", True), _f(4, "name", "string"), _f(5, "type", "enum", sub=_V1_TYPE),
    _f(6, "blobs", "msg", True, _BLOB), _f(7, "blobs_lr", "float", True),
    _f(8, "weight_decay", "float", True), _f(9, "concat_param", "msg", sub=_CONCAT),
    _f(10, "convolution_param", "msg", sub=_CONV), _f(12, "dropout_param", "msg", sub=_DROPOUT),
    _f(17, "inner_product_param", "msg", sub=_IP), _f(18, "lrn_param", "msg", sub=_LRN),
    _f(19, "pooling_param", "msg", sub=_POOLING), _f(21, "power_param", "msg", sub=_POWER),
    _f(24, "eltwise_param", "msg", sub=_ELTWISE), _f(30, "relu_param", "msg", sub=_RELU),
    _f(32, "include", "msg", True, _RULE), _f(33, "exclude", "msg", True, _RULE),
    _f(35, "loss_weight", "float", True), _f(39, "softmax_param", "msg", sub=_SOFTMAX),
    _f(1001, "param", "string", True),
)  # fmt: skip
_NET = _Msg(
    "NetParameter",
    _f(1, "name", "string"), _f(2, "layers", "msg", True, _V1_LAYER), _f(3, "input", "string", True),
    _f(4, "input_dim", "int", True), _f(5, "force_backward", "bool"),
    _f(8, "input_shape", "msg", True, _BLOB_SHAPE), _f(100, "layer", "msg", True, _LAYER),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Protobuf wire format
# ---------------------------------------------------------------------------------------------

_U64 = (1 << 64) - 1


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, new position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise DGNError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise DGNError(f"varint longer than 10 bytes at byte {pos - 10}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _scalar_from_varint(f: _Field, v: int) -> Any:
    if f.kind == "bool":
        return v != 0
    if f.kind == "uint":
        return v
    v = _signed(v)
    if f.kind == "enum":
        return f.sub.get(v, v)
    return v


def _unpacked_run(
    buf: bytes, start: int, end: int, tag: int, width: int, dtype: str
) -> tuple[np.ndarray, int]:
    """Read consecutive unpacked fixed-width records (1-byte ``tag`` + value) starting at ``start``.

    Scans in doubling windows so a file that interleaves other fields costs linear time.
    """
    stride = 1 + width
    total = (end - start) // stride
    count = 0
    window = 64
    while count < total:
        n = min(window, total - count)
        rows = np.frombuffer(buf, dtype=np.uint8, count=n * stride, offset=start + count * stride)
        bad = np.flatnonzero(rows[::stride] != tag)
        if bad.size:
            count += int(bad[0])
            break
        count += n
        window *= 2
    raw = np.frombuffer(buf, dtype=np.uint8, count=count * stride, offset=start).reshape(count, stride)
    values = np.ascontiguousarray(raw[:, 1:]).view(dtype).reshape(count)
    return values, start + count * stride


def _decode(buf: bytes, pos: int, end: int, msg: _Msg, depth: int = 0) -> dict:
    """Decode the message ``msg`` occupying ``buf[pos:end]`` into a dict keyed by field name.

    Unknown fields are skipped without being parsed; repeated fields are lists; ``floats`` and
    ``doubles`` fields are lists of numpy chunks (concatenated by the caller).
    """
    if depth > _MAX_DEPTH:
        raise DGNError(f"messages nested deeper than {_MAX_DEPTH} levels")
    out: dict[str, Any] = {}
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise DGNError(f"invalid field number {num} at byte {start} in {msg.name}")
        f = msg.by_num.get(num)
        if wt == 0:
            v, pos = _varint(buf, pos, end)
            if f is None:
                continue
            if f.kind not in ("int", "uint", "bool", "enum"):
                raise DGNError(f"{msg.name}.{f.name}: wire type 0 where {f.kind} expected (byte {start})")
            _put(out, f, _scalar_from_varint(f, v))
        elif wt in (1, 5):
            width = 8 if wt == 1 else 4
            if end - pos < width:
                raise DGNError(f"truncated {8 * width}-bit value at byte {pos} in {msg.name}")
            if f is None:
                pos += width
                continue
            want = "double" if wt == 1 else "float"
            if f.kind == want + "s":
                if pos - start == 1:
                    arr, pos = _unpacked_run(buf, start, end, buf[start], width, "<f8" if wt == 1 else "<f4")
                else:
                    arr = np.frombuffer(buf, dtype="<f8" if wt == 1 else "<f4", count=1, offset=pos)
                    pos += width
                out.setdefault(f.name, []).append(arr)
                continue
            if f.kind != want:
                raise DGNError(f"{msg.name}.{f.name}: {8 * width}-bit value where {f.kind} expected")
            _put(out, f, struct.unpack_from("<d" if wt == 1 else "<f", buf, pos)[0])
            pos += width
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise DGNError(
                    f"length {n} at byte {pos} in {msg.name} runs past the end of its message "
                    f"({end - pos} bytes left): truncated or corrupt file"
                )
            sub_end = pos + n
            if f is not None:
                _put_len(out, f, buf, pos, sub_end, depth, msg)
            pos = sub_end
        else:
            raise DGNError(f"unsupported wire type {wt} at byte {start} in {msg.name} (corrupt file?)")
    return out


def _put(out: dict, f: _Field, value: Any) -> None:
    if f.repeated:
        out.setdefault(f.name, []).append(value)
    else:
        out[f.name] = value


def _put_len(out: dict, f: _Field, buf: bytes, pos: int, end: int, depth: int, msg: _Msg) -> None:
    n = end - pos
    if f.kind == "string":
        _put(out, f, bytes(buf[pos:end]).decode("utf-8", errors="replace"))
    elif f.kind == "msg":
        _put(out, f, _decode(buf, pos, end, f.sub, depth + 1))
    elif f.kind in ("floats", "doubles", "float", "double"):
        width = 8 if f.kind.startswith("double") else 4
        if n % width:
            raise DGNError(f"{msg.name}.{f.name}: packed length {n} is not a multiple of {width}")
        if not f.repeated:
            raise DGNError(f"{msg.name}.{f.name}: packed data for a non-repeated field")
        arr = np.frombuffer(buf, dtype="<f8" if width == 8 else "<f4", count=n // width, offset=pos)
        if f.kind in ("floats", "doubles"):
            out.setdefault(f.name, []).append(arr)
        else:
            out.setdefault(f.name, []).extend(float(x) for x in arr)
    elif f.repeated:  # packed varints
        vals = out.setdefault(f.name, [])
        while pos < end:
            v, pos = _varint(buf, pos, end)
            vals.append(_scalar_from_varint(f, v))
    else:
        raise DGNError(f"{msg.name}.{f.name}: length-delimited data where {f.kind} expected")


# ---------------------------------------------------------------------------------------------
# Protobuf text format
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+|\#[^\n]*)
    |(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)(?![A-Za-z_0-9]))
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<p>[{}<>:\[\],;.\-/])""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {
    "n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
    "\\": b"\\", "'": b"'", '"': b'"', "?": b"?",
}  # fmt: skip
# Fields Caffe declares repeated that text parsing always returns as lists, even when they occur once.
_ALWAYS_LIST = frozenset(
    {"layer", "layers", "bottom", "top", "input", "input_dim", "input_shape", "include", "exclude",
     "param", "dim", "blobs", "blobs_lr", "weight_decay", "loss_weight", "propagate_down"}
)  # fmt: skip


def _unescape(body: str, where: str) -> str:
    out = bytearray()
    last = 0
    for m in _ESCAPE.finditer(body):
        out += body[last : m.start()].encode("utf-8")
        esc = m.group(1)
        if esc[0] == "x":
            out.append(int(esc[1:], 16))
        elif esc[0] in "01234567":
            out.append(int(esc, 8) & 0xFF)
        elif esc[0] in "uU" and len(esc) > 1:
            try:
                out += chr(int(esc[1:], 16)).encode("utf-8", errors="replace")
            except (ValueError, OverflowError):
                raise DGNError(f"{where}: bad unicode escape \\{esc}") from None
        elif esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc]
        else:
            raise DGNError(f"{where}: unknown escape \\{esc} in a string")
        last = m.end()
    out += body[last:].encode("utf-8")
    return out.decode("utf-8", errors="replace")


class _TextParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        n = len(text)
        while pos < n:
            m = _TOKEN.match(text, pos)
            if m is None:
                raise DGNError(f"{self._where(pos)}: unexpected character {text[pos]!r}")
            kind = m.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def _where(self, pos: int) -> str:
        return f"prototxt line {self.text.count(chr(10), 0, pos) + 1}"

    def _here(self) -> str:
        if self.i < len(self.tokens):
            return self._where(self.tokens[self.i][2])
        return "prototxt end of text"

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise DGNError("prototxt: unexpected end of text (missing '}'?)")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def message(self, depth: int, closing: str | None) -> dict:
        if depth > _MAX_DEPTH:
            raise DGNError(f"{self._here()}: messages nested deeper than {_MAX_DEPTH} levels")
        fields: dict[str, list] = {}
        from_list: set[str] = set()
        while True:
            tok = self._peek()
            if tok is None:
                if closing is not None:
                    raise DGNError(f"prototxt: unexpected end of text, missing {closing!r}")
                break
            if tok == closing:
                self.i += 1
                break
            name = self._field_name()
            colon = self._peek() == ":"
            if colon:
                self.i += 1
            nxt = self._peek()
            values = fields.setdefault(name, [])
            if nxt in ("{", "<"):
                self.i += 1
                values.append(self.message(depth + 1, "}" if nxt == "{" else ">"))
            elif nxt == "[" and colon:
                self.i += 1
                from_list.add(name)
                if self._peek() == "]":
                    self.i += 1
                else:
                    while True:
                        if self._peek() in ("{", "<"):
                            op = self._next()[1]
                            values.append(self.message(depth + 1, "}" if op == "{" else ">"))
                        else:
                            values.append(self._scalar())
                        where = self._here()
                        sep = self._next()[1]
                        if sep == "]":
                            break
                        if sep != ",":
                            raise DGNError(f"{where}: expected ',' or ']' in a list, found {sep!r}")
            elif colon:
                values.append(self._scalar())
            else:
                raise DGNError(f"{self._here()}: expected ':' or '{{' after field {name!r}")
            if self._peek() in (",", ";"):
                self.i += 1
        return {
            k: v if (k in _ALWAYS_LIST or k in from_list or len(v) != 1) else v[0] for k, v in fields.items()
        }

    def _field_name(self) -> str:
        where = self._here()
        kind, text, _ = self._next()
        if kind == "id":
            return text
        if text == "[":  # extension or Any type URL: keep the bracketed name verbatim
            parts = []
            while True:
                t = self._next()[1]
                if t == "]":
                    return "[" + "".join(parts) + "]"
                parts.append(t)
        raise DGNError(f"{where}: expected a field name, found {text!r}")

    def _scalar(self) -> Any:
        where = self._here()
        kind, text, _ = self._next()
        if kind == "str":
            parts = [_unescape(text[1:-1], where)]
            while self.i < len(self.tokens) and self.tokens[self.i][0] == "str":
                parts.append(_unescape(self.tokens[self.i][1][1:-1], where))
                self.i += 1
            return "".join(parts)
        if kind == "num":
            return _number(text, where)
        sign = 1.0
        if text == "-" and self.i < len(self.tokens) and self.tokens[self.i][0] == "id":
            sign = -1.0
            kind, text, _ = self._next()
        if kind == "id":
            low = text.lower()
            if low in ("inf", "infinity"):
                return sign * math.inf
            if low == "nan":
                return math.nan
            if sign < 0:
                raise DGNError(f"{where}: '-' before {text!r}")
            if text in ("true", "True"):
                return True
            if text in ("false", "False"):
                return False
            return text  # an enum value name
        raise DGNError(f"{where}: expected a value, found {text!r}")


def _number(text: str, where: str) -> int | float:
    body = text.lstrip("+-")
    neg = text.startswith("-")
    if body[:2] in ("0x", "0X"):
        v: int | float = int(body, 16)
    elif re.fullmatch(r"\d+", body):
        v = int(body)
    else:
        try:
            v = float(body.rstrip("fF"))
        except ValueError:
            raise DGNError(f"{where}: bad number {text!r}") from None
    return -v if neg else v


def parse_prototxt_text(text: str) -> dict:
    """Parse protobuf text format into nested dicts.

    Every message becomes a dict keyed by field name. A field that occurs more than once, or is
    written with list syntax (``dim: [1, 3]``), becomes a list; so do Caffe's common repeated
    fields (``layer``, ``layers``, ``bottom``, ``top``, ``input``, ``input_dim``, ``include``,
    ``dim``, ...) even when they occur once. Enum values stay strings (``"MAX"``), ``true`` /
    ``false`` become bools. Comments (``#``) and quoted strings with C escapes are handled.

    Args:
        text: the text of a ``.prototxt`` file.

    Returns:
        The top-level message as a dict.

    Raises:
        DGNError: malformed text (the message names the line), or nesting deeper than 64 levels.
    """
    parser = _TextParser(text)
    return parser.message(0, None)


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _coerce(value: Any, f: _Field, where: str) -> Any:
    """Give one text-format value the type its schema field declares."""
    kind = f.kind
    if kind == "msg":
        if not isinstance(value, dict):
            raise DGNError(f"{where}: field {f.name!r} must be a message {{...}}, got {value!r}")
        return _normalise(value, f.sub, where)
    if kind == "enum":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DGNError(
                f"{where}: field {f.name!r} expects one of {sorted(f.sub.values())}, got {value!r}"
            )
        return f.sub.get(value, value) if isinstance(value, int) else value
    if kind in ("int", "uint"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DGNError(f"{where}: field {f.name!r} expects an integer, got {value!r}")
        if kind == "uint" and value < 0:
            raise DGNError(f"{where}: field {f.name!r} must not be negative, got {value}")
        return value
    if kind in ("float", "double", "floats", "doubles"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DGNError(f"{where}: field {f.name!r} expects a number, got {value!r}")
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in (0, 1, "t", "f"):
            return value in (1, "t")
        raise DGNError(f"{where}: field {f.name!r} expects true or false, got {value!r}")
    if not isinstance(value, str):
        raise DGNError(f"{where}: field {f.name!r} expects a quoted string, got {value!r}")
    return value


def _normalise(d: dict, msg: _Msg, where: str) -> dict:
    """Make a parsed text message look like the binary decoder's output for the same message."""
    out: dict[str, Any] = {}
    for key, val in d.items():
        f = msg.by_name.get(key)
        if f is None:
            out[key] = val
            continue
        vals = [_coerce(v, f, where) for v in _as_list(val)]
        if f.kind in ("floats", "doubles"):
            out[key] = [np.asarray(vals, dtype=np.float64 if f.kind == "doubles" else np.float32)]
        elif f.repeated:
            out[key] = vals
        elif vals:
            out[key] = vals[-1]
    return out


# ---------------------------------------------------------------------------------------------
# From decoded dicts to CaffeNet
# ---------------------------------------------------------------------------------------------


def _shape_tuple(dims: Iterable[Any], where: str) -> tuple[int, ...]:
    dims = list(dims)
    if len(dims) > _MAX_AXES:
        raise DGNError(f"{where}: {len(dims)} axes (Caffe allows at most {_MAX_AXES})")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise DGNError(f"{where}: bad dimension {d!r} in shape {dims}")
    return tuple(int(d) for d in dims)


def _blob_array(b: dict, where: str) -> tuple[np.ndarray, bool]:
    """Turn a decoded BlobProto into an array; the flag says the shape came from legacy 4D fields."""
    chunks = b.get("double_data") or []
    if chunks:
        data = np.concatenate(chunks).astype(np.float64)
    else:
        chunks = b.get("data") or []
        data = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    legacy = False
    if "shape" in b:
        dims = _shape_tuple(b["shape"].get("dim", []), where)
    elif any(k in b for k in ("num", "channels", "height", "width")):
        dims = _shape_tuple([b.get(k, 0) for k in ("num", "channels", "height", "width")], where)
        legacy = True
    else:
        dims = (data.size,)
    count = math.prod(dims)
    if count != data.size:
        raise DGNError(f"{where}: blob shape {dims} needs {count} values but the file holds {data.size}")
    return data.reshape(dims), legacy


def _squeeze_legacy(arr: np.ndarray, layer_type: str, index: int) -> np.ndarray:
    """Drop the leading 1s that V1 files pad weights with: IP weight (1,1,out,in), biases (1,1,1,out)."""
    if layer_type == "InnerProduct":
        keep = 2 if index == 0 else 1
    elif layer_type in ("Convolution", "Deconvolution") and index == 1:
        keep = 1
    else:
        return arr
    if arr.ndim > keep and all(d == 1 for d in arr.shape[:-keep]):
        return arr.reshape(arr.shape[-keep:])
    return arr


def _v0_params(v0: dict, layer_type: str) -> dict:
    """Translate a V0 layer's flat fields into the modern *_param messages."""

    def pick(**names: str) -> dict:
        return {new: v0[old] for new, old in names.items() if old in v0}

    if layer_type == "Convolution":
        p = pick(num_output="num_output", bias_term="biasterm", group="group")
        p.update(
            {
                k: [v0[o]]
                for k, o in (("pad", "pad"), ("kernel_size", "kernelsize"), ("stride", "stride"))
                if o in v0
            }
        )
        return {"convolution_param": p}
    if layer_type == "InnerProduct":
        return {"inner_product_param": pick(num_output="num_output", bias_term="biasterm")}
    if layer_type == "Pooling":
        return {"pooling_param": pick(pool="pool", kernel_size="kernelsize", stride="stride", pad="pad")}
    if layer_type == "Dropout":
        return {"dropout_param": pick(dropout_ratio="dropout_ratio")}
    if layer_type == "LRN":
        return {"lrn_param": pick(local_size="local_size", alpha="alpha", beta="beta", k="k")}
    return {}


_LAYER_KEYS = ("name", "type", "bottom", "top", "blobs")


def _make_layer(d: dict, v1: bool, index: int) -> CaffeLayer:
    v0 = d.get("layer") if v1 else None
    if v0 is not None and not isinstance(v0, dict):
        v0 = None
    name = str(d.get("name") or (v0 or {}).get("name") or f"layer{index}")
    where = f"layer {name!r}"
    raw_type = d.get("type")
    if raw_type is None and v0 is not None:
        t = str(v0.get("type", ""))
        layer_type = _V0_TO_NEW.get(t, t)
    else:
        t = str(raw_type if raw_type is not None else "")
        layer_type = _V1_TO_NEW.get(t, t)
    params = {k: v for k, v in d.items() if k not in _LAYER_KEYS and k != "layer"}
    raw_blobs = d.get("blobs") or []
    if v0 is not None:
        params.update(_v0_params(v0, layer_type))
        if not raw_blobs:
            raw_blobs = v0.get("blobs") or []
    blobs = []
    for i, b in enumerate(raw_blobs):
        arr, legacy = _blob_array(b, f"{where} blob {i}")
        blobs.append(_squeeze_legacy(arr, layer_type, i) if legacy else arr)
    return CaffeLayer(
        name=name,
        type=layer_type,
        bottoms=[str(x) for x in _as_list(d.get("bottom"))],
        tops=[str(x) for x in _as_list(d.get("top"))],
        blobs=blobs,
        params=params,
    )


def _net_from_dict(d: dict) -> tuple[CaffeNet, str]:
    if d.get("layer") and d.get("layers"):
        raise DGNError("net mixes 'layer' (current) and 'layers' (V1) fields; Caffe rejects that too")
    fmt = "V1" if d.get("layers") else "current"
    raw = d.get("layers") if fmt == "V1" else d.get("layer")
    layers = [_make_layer(x, fmt == "V1", i) for i, x in enumerate(_as_list(raw))]
    if fmt == "V1" and any("layer" in x for x in _as_list(raw)):
        fmt = "V0"
    inputs: dict[str, tuple[int, ...]] = {}
    names = [str(x) for x in _as_list(d.get("input"))]
    shapes = _as_list(d.get("input_shape"))
    dims = _as_list(d.get("input_dim"))
    if shapes:
        if len(shapes) != len(names):
            raise DGNError(f"net declares {len(names)} inputs but {len(shapes)} input_shape entries")
        for n, s in zip(names, shapes):
            inputs[n] = _shape_tuple(s.get("dim", []), f"input {n!r}")
    elif dims:
        if len(dims) != 4 * len(names):
            raise DGNError(f"net declares {len(names)} inputs but {len(dims)} input_dim values (need 4 each)")
        for i, n in enumerate(names):
            inputs[n] = _shape_tuple(dims[4 * i : 4 * i + 4], f"input {n!r}")
    elif names:
        raise DGNError(f"net declares inputs {names} without input_shape or input_dim")
    for lay in layers:
        if lay.type == "Input":
            inputs.update(_input_layer_shapes(lay))
    return CaffeNet(name=str(d.get("name", "")), layers=layers, inputs=inputs), fmt


def _input_layer_shapes(lay: CaffeLayer) -> dict[str, tuple[int, ...]]:
    p = lay.params.get("input_param") or {}
    shapes = [_shape_tuple(s.get("dim", []), f"layer {lay.name!r}") for s in _as_list(p.get("shape"))]
    if not shapes:
        return {}
    if len(shapes) == 1:
        return {t: shapes[0] for t in lay.tops}
    if len(shapes) != len(lay.tops):
        raise DGNError(f"Input layer {lay.name!r} has {len(lay.tops)} tops but {len(shapes)} shapes")
    return dict(zip(lay.tops, shapes))


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DGNError(f"cannot read {path}: {e.strerror or e}") from None


def _load_caffemodel(path: str | Path) -> tuple[CaffeNet, str]:
    buf = _read_bytes(path)
    try:
        d = _decode(buf, 0, len(buf), _NET)
        return _net_from_dict(d)
    except DGNError as e:
        raise DGNError(f"{path}: {e}") from None


def read_caffemodel(path: str | Path) -> CaffeNet:
    """Read a binary ``.caffemodel`` (current, V1 or V0 layer format).

    Args:
        path: the ``.caffemodel`` file.

    Returns:
        The net with every layer's weights as numpy arrays (float32; float64 where the file
        stores ``double_data``). Layer types use the modern names (``"Convolution"``). V1
        legacy shapes are squeezed: InnerProduct weights to (out, in), biases to (out,).

    Raises:
        DGNError: unreadable, truncated or corrupt file.
    """
    return _load_caffemodel(path)[0]


def read_prototxt(path: str | Path) -> CaffeNet:
    """Read a ``.prototxt`` net description (no weights).

    Args:
        path: the ``.prototxt`` file.

    Returns:
        The net: layers with modern type names, and ``inputs`` from ``input`` /
        ``input_dim`` / ``input_shape`` and from ``Input`` layers.

    Raises:
        DGNError: unreadable or malformed file.
    """
    text = _read_bytes(path).decode("utf-8", errors="replace")
    try:
        return _net_from_text(text)
    except DGNError as e:
        raise DGNError(f"{path}: {e}") from None


def _net_from_text(text: str) -> CaffeNet:
    # V1 enum types (CONVOLUTION) arrive as bare names, which _normalise keeps as strings.
    return _net_from_dict(_normalise(parse_prototxt_text(text), _NET, "net"))[0]


def inspect_caffemodel(path: str | Path) -> str:
    """Describe a ``.caffemodel`` as a table of layers, types and blob shapes.

    Args:
        path: the ``.caffemodel`` file.

    Returns:
        A multi-line, human-readable table (the library itself never prints).

    Raises:
        DGNError: unreadable, truncated or corrupt file.
    """
    net, fmt = _load_caffemodel(path)
    total = sum(int(b.size) for lay in net.layers for b in lay.blobs)
    rows = [("#", "name", "type", "bottoms -> tops", "blob shapes", "params")]
    for i, lay in enumerate(net.layers):
        shapes = " ".join(
            "(" + ", ".join(map(str, b.shape)) + ("," if b.ndim == 1 else "") + ")" for b in lay.blobs
        )
        if any(b.dtype == np.float64 for b in lay.blobs):
            shapes += " float64"
        flow = f"{', '.join(lay.bottoms) or '-'} -> {', '.join(lay.tops) or '-'}"
        count = sum(int(b.size) for b in lay.blobs)
        rows.append((str(i), lay.name, lay.type, flow, shapes or "-", f"{count:,}" if count else "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [f"Caffe net {net.name!r} ({fmt} layer format): {len(net.layers)} layers, {total:,} parameters"]
    if net.inputs:
        lines.append("inputs: " + ", ".join(f"{k} {v}" for k, v in net.inputs.items()))
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# PyTorch modules with Caffe semantics
# ---------------------------------------------------------------------------------------------


_NEG_FLT_MAX = float(np.finfo(np.float32).min)


def _pool_out_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """Caffe's pooled size: ceil (or floor) rounding, then drop a last window that starts in the padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class CaffePool2d(nn.Module):
    """Caffe's MAX / AVE pooling, exactly.

    Output size is Caffe's (ceil rounding by default, last window never starting in the right
    padding). Unlike PyTorch's ``ceil_mode``, Caffe keeps a last window that starts beyond an
    unpadded input (possible when stride > kernel); it yields -FLT_MAX (MAX, as in Caffe) or 0 (AVE,
    where Caffe divides by a window size <= 0 and gets NaN or -0). MAX ignores padding. AVE divides each window's sum by the window size clipped
    to the padded input ``[-pad, H + pad)``, so windows that overhang the padded input count
    fewer elements while the padding itself is counted, as Caffe's ``PoolingLayer`` does.
    """

    def __init__(
        self,
        mode: str,
        kernel: tuple[int, int] = (1, 1),
        stride: tuple[int, int] = (1, 1),
        pad: tuple[int, int] = (0, 0),
        ceil_mode: bool = True,
        global_pooling: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("MAX", "AVE"):
            raise DGNError(f"pooling mode {mode!r} is not supported; use MAX or AVE")
        self.mode = mode
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.pad = tuple(pad)
        self.ceil_mode = ceil_mode
        self.global_pooling = global_pooling

    def extra_repr(self) -> str:
        if self.global_pooling:
            return f"{self.mode}, global"
        return (
            f"{self.mode}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}, "
            f"round={'CEIL' if self.ceil_mode else 'FLOOR'}"
        )

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Pooled (height, width) for an input of ``h`` x ``w``."""
        if self.global_pooling:
            return 1, 1
        return (
            _pool_out_size(h, self.kernel[0], self.stride[0], self.pad[0], self.ceil_mode),
            _pool_out_size(w, self.kernel[1], self.stride[1], self.pad[1], self.ceil_mode),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pooling:
            return (
                x.amax(dim=(-2, -1), keepdim=True)
                if self.mode == "MAX"
                else x.mean(dim=(-2, -1), keepdim=True)
            )
        h, w = x.shape[-2], x.shape[-1]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        oh, ow = self.output_size(h, w)
        if oh <= 0 or ow <= 0:
            raise DGNError(f"pooling {self.kernel} with pad {self.pad} leaves no output for a {h}x{w} input")
        # pad right/bottom just enough for the last window, then pool without implicit padding
        rh = max(0, (oh - 1) * sh + kh - ph - h)
        rw = max(0, (ow - 1) * sw + kw - pw - w)
        if self.mode == "MAX":
            # -FLT_MAX, Caffe's initial max: what a window lying wholly outside the input yields
            xp = F.pad(x, (pw, rw, ph, rh), value=_NEG_FLT_MAX) if (pw or rw or ph or rh) else x
            return F.max_pool2d(xp, (kh, kw), (sh, sw))[..., :oh, :ow]
        xp = F.pad(x, (pw, rw, ph, rh)) if (pw or rw or ph or rh) else x
        sums = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)[..., :oh, :ow]
        starts_h = torch.arange(oh, device=x.device) * sh - ph
        starts_w = torch.arange(ow, device=x.device) * sw - pw
        size_h = torch.clamp(starts_h + kh, max=h + ph) - starts_h
        size_w = torch.clamp(starts_w + kw, max=w + pw) - starts_w
        divisor = (size_h[:, None] * size_w[None, :]).clamp(min=1).to(sums.dtype)
        return sums / divisor


class _LRNWithinChannel(nn.Module):
    """Caffe LRN with ``norm_region: WITHIN_CHANNEL``: x / (1 + alpha/n^2 * sum_{n x n} x^2)^beta.

    Caffe builds it from AVE pooling (kernel n, pad (n-1)/2, zero padding counted) of x^2,
    then a Power layer (shift 1, scale alpha, power -beta); ``k`` is not used.
    """

    def __init__(self, size: int, alpha: float, beta: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_sq = F.avg_pool2d(
            x * x, self.size, stride=1, padding=(self.size - 1) // 2, count_include_pad=True
        )
        return x * (1.0 + self.alpha * mean_sq).pow(-self.beta)


class _InnerProduct(nn.Linear):
    """Caffe InnerProduct: flatten from ``axis`` on, then a linear map."""

    def __init__(self, in_features: int, out_features: int, bias: bool, axis: int) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.axis = axis

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={self.axis}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(self.axis), self.weight, self.bias)


class _Reshape(nn.Module):
    """Caffe Reshape: ``0`` copies an input dimension, ``-1`` is inferred; axis/num_axes pick the span."""

    def __init__(self, dims: list[int], axis: int, num_axes: int) -> None:
        super().__init__()
        self.dims, self.axis, self.num_axes = list(dims), axis, num_axes

    def extra_repr(self) -> str:
        return f"dims={self.dims}, axis={self.axis}, num_axes={self.num_axes}"

    def target_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input of ``shape``."""
        n = len(shape)
        start = self.axis if self.axis >= 0 else self.axis + n + 1
        end = n if self.num_axes == -1 else start + self.num_axes
        if not (0 <= start <= n and start <= end <= n):
            raise DGNError(f"reshape axis={self.axis} num_axes={self.num_axes} does not fit a {n}-D input")
        new: list[int] = []
        for i, d in enumerate(self.dims):
            if d == 0:
                if start + i >= n:
                    raise DGNError(f"reshape dim 0 at position {i} copies an axis the input lacks")
                new.append(shape[start + i])
            else:
                new.append(d)
        out = list(shape[:start]) + new + list(shape[end:])
        if out.count(-1) > 1:
            raise DGNError(f"reshape {self.dims}: at most one -1")
        total = math.prod(shape)
        if -1 in out:
            known = math.prod(d for d in out if d != -1)
            if known == 0 or total % known:
                raise DGNError(f"reshape {self.dims} cannot take {tuple(shape)}")
            out[out.index(-1)] = total // known
        if math.prod(out) != total:
            raise DGNError(f"reshape {self.dims} cannot take {tuple(shape)} ({total} values)")
        return tuple(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.target_shape(tuple(x.shape)))


class _Concat(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


class _Split(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x,) * self.n


class _Eltwise(nn.Module):
    def __init__(self, op: str, coeffs: list[float]) -> None:
        super().__init__()
        self.op, self.coeffs = op, list(coeffs)

    def extra_repr(self) -> str:
        return f"{self.op}" + (f", coeffs={self.coeffs}" if self.coeffs else "")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.op == "SUM":
            coeffs = self.coeffs or [1.0] * len(xs)
            out = xs[0] * coeffs[0] if coeffs[0] != 1.0 else xs[0]
            for x, c in zip(xs[1:], coeffs[1:]):
                out = out + (x * c if c != 1.0 else x)
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.op == "PROD" else torch.maximum(out, x)
        return out


class _Power(nn.Module):
    """Caffe Power: (shift + scale * x) ** power."""

    def __init__(self, power: float, scale: float, shift: float) -> None:
        super().__init__()
        self.power, self.scale, self.shift = power, scale, shift

    def extra_repr(self) -> str:
        return f"power={self.power}, scale={self.scale}, shift={self.shift}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale + self.shift if (self.scale != 1.0 or self.shift != 0.0) else x
        return y.pow(self.power) if self.power != 1.0 else y


class _Dropout(nn.Module):
    """Caffe Dropout with ``scale_train: false``: plain masking in training, scaled by (1 - p) at test."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.dropout(x, self.p, True) * (1.0 - self.p)
        return x * (1.0 - self.p)


@dataclass
class LoadReport:
    """What :func:`load_into` did: loaded keys, Caffe blobs with no module parameter, and
    module parameters that no Caffe blob filled."""

    loaded: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class CaffeModule(nn.Module):
    """A Caffe net as a PyTorch module.

    Submodules are registered under the Caffe layer names, with characters PyTorch dislikes
    replaced by ``_``; ``caffe_names`` maps Caffe layer name -> submodule name. ``forward``
    runs the layers in file order, passing tensors by blob name (in-place layers rebind the
    blob), and returns the last layer's last top, or every blob with ``return_all=True``.
    """

    def __init__(
        self,
        name: str,
        input_shapes: dict[str, tuple[int, ...]],
        steps: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
        modules: dict[str, nn.Module],
        caffe_names: dict[str, str],
        blob_shapes: dict[str, tuple[int, ...]],
    ) -> None:
        super().__init__()
        self.net_name = name
        self.input_shapes = dict(input_shapes)
        self.input_names = list(input_shapes)
        self.caffe_names = dict(caffe_names)
        self.blob_shapes = dict(blob_shapes)
        self.load_report: LoadReport | None = None
        for key, mod in modules.items():
            self.add_module(key, mod)
        self._steps = list(steps)
        if self._steps:
            self.output_name = self._steps[-1][2][-1]
        elif self.input_names:
            self.output_name = self.input_names[-1]
        else:
            raise DGNError(f"net {name!r} has no inputs and no layers to run")

    def forward(
        self, *inputs: torch.Tensor, return_all: bool = False, **named: torch.Tensor
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Run the net.

        Args:
            *inputs: input tensors in the order of ``input_names``.
            return_all: return every blob (name -> tensor) instead of the output blob.
            **named: input tensors by blob name.

        Returns:
            The output blob (``output_name``), or the dict of all blobs.
        """
        if len(inputs) > len(self.input_names):
            raise DGNError(f"net {self.net_name!r} takes {len(self.input_names)} inputs, got {len(inputs)}")
        blobs: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        blobs.update(named)
        missing = [n for n in self.input_names if n not in blobs]
        if missing:
            raise DGNError(f"net {self.net_name!r} needs inputs {self.input_names}; missing {missing}")
        for key, bottoms, tops in self._steps:
            out = self._modules[key](*[blobs[b] for b in bottoms])
            if isinstance(out, torch.Tensor):
                out = (out,)
            for t, v in zip(tops, out):
                blobs[t] = v
        return blobs if return_all else blobs[self.output_name]


def sanitize_name(name: str) -> str:
    """A Caffe layer name made safe as a PyTorch submodule name ('.', '/', '-', ... become '_')."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"


# ---------------------------------------------------------------------------------------------
# build_module
# ---------------------------------------------------------------------------------------------

_DATA_TYPES = frozenset(
    {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "AnnotatedData", "VideoData"}
)
_SKIPPED_TYPES = frozenset(
    {"Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
     "SigmoidCrossEntropyLoss", "ContrastiveLoss", "Silence", "HDF5Output"}
)  # fmt: skip
SUPPORTED_LAYER_TYPES: tuple[str, ...] = (
    "Input", "Convolution", "Deconvolution", "InnerProduct", "Pooling", "ReLU", "Sigmoid", "TanH",
    "LRN", "Softmax", "Dropout", "Reshape", "Flatten", "Concat", "Split", "Eltwise", "Power",
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


def _build_layer(
    lay: CaffeLayer, shapes: list[tuple[int, ...]], where: str
) -> tuple[nn.Module, list[tuple[int, ...]]]:
    """Make the module for one layer and compute its top shapes from its bottom shapes."""
    t = lay.type
    p = lay.params
    if t not in ("Concat", "Eltwise") and len(shapes) != 1:
        raise DGNError(f"{where}: expects 1 bottom, has {len(shapes)}")
    if not shapes:
        raise DGNError(f"{where}: needs at least one bottom")
    if t != "Split" and len(lay.tops) != 1:
        raise DGNError(f"{where}: expects 1 top, has {len(lay.tops)}")
    x = shapes[0]

    if t in ("Convolution", "Deconvolution"):
        c = p.get("convolution_param") or {}
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
        if t == "Convolution":
            hw = [(x[2 + i] + 2 * pad[i] - ext[i]) // stride[i] + 1 for i in range(2)]
            mod: nn.Module = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation, group, bias)
        else:
            hw = [stride[i] * (x[2 + i] - 1) + ext[i] - 2 * pad[i] for i in range(2)]
            mod = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, pad, 0, group, bias, dilation)
        if min(hw) <= 0:
            raise DGNError(f"{where}: output would be empty for input {x}")
        return mod, [(x[0], out_ch, hw[0], hw[1])]

    if t == "InnerProduct":
        c = p.get("inner_product_param") or {}
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

    if t == "Pooling":
        c = p.get("pooling_param") or {}
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

    if t == "ReLU":
        slope = float((p.get("relu_param") or {}).get("negative_slope", 0.0))
        return (nn.LeakyReLU(slope) if slope else nn.ReLU()), [x]
    if t == "Sigmoid":
        return nn.Sigmoid(), [x]
    if t == "TanH":
        return nn.Tanh(), [x]
    if t == "LRN":
        c = p.get("lrn_param") or {}
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
    if t == "Softmax":
        axis = int((p.get("softmax_param") or {}).get("axis", 1))
        if not -len(x) <= axis < len(x):
            raise DGNError(f"{where}: softmax axis {axis} out of range for input {x}")
        return nn.Softmax(dim=axis), [x]
    if t == "Dropout":
        c = p.get("dropout_param") or {}
        ratio = float(c.get("dropout_ratio", 0.5))
        if not 0.0 <= ratio < 1.0:
            raise DGNError(f"{where}: dropout_ratio {ratio} must be in [0, 1)")
        return (nn.Dropout(ratio) if c.get("scale_train", True) else _Dropout(ratio)), [x]
    if t == "Reshape":
        c = p.get("reshape_param") or {}
        dims = [int(d) for d in _as_list((c.get("shape") or {}).get("dim"))]
        axis, num_axes = int(c.get("axis", 0)), int(c.get("num_axes", -1))
        start = axis if axis >= 0 else axis + len(x) + 1
        if start == 0 and dims and dims[0] > 0 and dims[0] == x[0]:
            dims[0] = 0  # an explicit batch size equal to the input's: copy it, so any batch works
        mod = _Reshape(dims, axis, num_axes)
        return mod, [mod.target_shape(x)]
    if t == "Flatten":
        c = p.get("flatten_param") or {}
        a, e = int(c.get("axis", 1)), int(c.get("end_axis", -1))
        if not (-len(x) <= a < len(x) and -len(x) <= e < len(x)) or e % len(x) < a % len(x):
            raise DGNError(f"{where}: flatten axis {a}..{e} does not fit input {x}")
        a, e = a % len(x), e % len(x)
        return nn.Flatten(a, e), [x[:a] + (math.prod(x[a : e + 1]),) + x[e + 1 :]]
    if t == "Concat":
        c = p.get("concat_param") or {}
        axis = int(c["axis"]) if "axis" in c else int(c.get("concat_dim", 1))
        if not -len(x) <= axis < len(x):
            raise DGNError(f"{where}: concat axis {axis} out of range for input {x}")
        axis %= len(x)
        for s in shapes[1:]:
            if len(s) != len(x) or any(a != b for i, (a, b) in enumerate(zip(s, x)) if i != axis):
                raise DGNError(f"{where}: cannot concatenate shapes {shapes} along axis {axis}")
        return _Concat(axis), [x[:axis] + (sum(s[axis] for s in shapes),) + x[axis + 1 :]]
    if t == "Split":
        if not lay.tops:
            raise DGNError(f"{where}: Split needs at least one top")
        return _Split(len(lay.tops)), [x] * len(lay.tops)
    if t == "Eltwise":
        c = p.get("eltwise_param") or {}
        op = c.get("operation", "SUM")
        coeffs = [float(v) for v in _as_list(c.get("coeff"))]
        if op not in ("SUM", "PROD", "MAX"):
            raise DGNError(f"{where}: eltwise operation {op!r} must be SUM, PROD or MAX")
        if coeffs and (op != "SUM" or len(coeffs) != len(shapes)):
            raise DGNError(f"{where}: coeff needs operation SUM and one value per bottom")
        if any(s != x for s in shapes):
            raise DGNError(f"{where}: eltwise bottoms differ in shape: {shapes}")
        return _Eltwise(op, coeffs), [x]
    if t == "Power":
        c = p.get("power_param") or {}
        mod = _Power(float(c.get("power", 1.0)), float(c.get("scale", 1.0)), float(c.get("shift", 0.0)))
        return mod, [x]
    raise DGNError(
        f"{where}: layer type {t!r} is not supported; supported types: {', '.join(SUPPORTED_LAYER_TYPES)}"
    )


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


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

_BLOB_PARAM_NAMES = ("weight", "bias")


def _state_items(net: CaffeNet, mapping: dict[str, str] | None) -> list[tuple[str, torch.Tensor, str, int]]:
    items = []
    seen: dict[str, str] = {}
    for lay in net.layers:
        if not lay.blobs:
            continue
        prefix = (mapping or {}).get(lay.name) or sanitize_name(lay.name)
        if prefix in seen:
            raise DGNError(f"layers {seen[prefix]!r} and {lay.name!r} both map to {prefix!r}")
        seen[prefix] = lay.name
        transpose = lay.type == "InnerProduct" and bool(
            (lay.params.get("inner_product_param") or {}).get("transpose")
        )
        for i, blob in enumerate(lay.blobs):
            arr = blob.T if (transpose and i == 0 and blob.ndim == 2) else blob
            pname = _BLOB_PARAM_NAMES[i] if i < len(_BLOB_PARAM_NAMES) else f"blob{i}"
            items.append((f"{prefix}.{pname}", torch.from_numpy(np.ascontiguousarray(arr)), lay.name, i))
    return items


def caffe_state_dict(net: CaffeNet, mapping: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Caffe blobs as a PyTorch state dict.

    Blob 0 becomes ``{name}.weight``, blob 1 ``{name}.bias`` (further blobs ``{name}.blob{i}``).
    InnerProduct weights stored with ``transpose: true`` are transposed to (out, in).

    Args:
        net: a net read by :func:`read_caffemodel`.
        mapping: Caffe layer name -> module name; layers not in it use :func:`sanitize_name`.

    Returns:
        Tensors (sharing memory with the numpy blobs), keyed as above.

    Raises:
        DGNError: two layers map to the same name.
    """
    return {key: t for key, t, _, _ in _state_items(net, mapping)}


def load_into(
    module: nn.Module, net: CaffeNet, mapping: dict[str, str] | None = None, strict: bool = True
) -> LoadReport:
    """Copy Caffe weights into ``module``'s parameters, checking every shape first.

    Args:
        module: the target, e.g. from :func:`build_module`.
        net: a net read by :func:`read_caffemodel`.
        mapping: Caffe layer name -> submodule name; defaults to ``module.caffe_names`` when
            present, else :func:`sanitize_name` of each layer name.
        strict: also fail when a Caffe blob has no parameter to go to, or a module parameter
            gets no blob.

    Returns:
        A :class:`LoadReport` (loaded keys, unmapped Caffe blobs, missing module parameters).

    Raises:
        DGNError: a shape mismatch (naming the Caffe layer), or, with ``strict``, unmapped
            blobs / missing parameters. Nothing is copied when it raises.
    """
    if mapping is None:
        mapping = getattr(module, "caffe_names", None)
    params = dict(module.named_parameters())
    report = LoadReport()
    todo = []
    for key, tensor, layer, i in _state_items(net, mapping):
        target = params.get(key)
        if target is None:
            report.unmapped.append(key)
            continue
        if tuple(target.shape) != tuple(tensor.shape):
            raise DGNError(
                f"Caffe layer {layer!r} blob {i} has shape {tuple(tensor.shape)} but module parameter "
                f"{key!r} has shape {tuple(target.shape)}"
            )
        todo.append((target, tensor))
        report.loaded.append(key)
    loaded = set(report.loaded)
    report.missing = [k for k in params if k not in loaded]
    if strict and (report.unmapped or report.missing):
        raise DGNError(
            f"weights do not cover the module: Caffe blobs without a parameter {report.unmapped}; "
            f"module parameters without a Caffe blob {report.missing} (pass strict=False to allow)"
        )
    with torch.no_grad():
        for target, tensor in todo:
            target.copy_(tensor)
    return report
