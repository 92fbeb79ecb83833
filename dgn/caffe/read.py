"""From decoded dicts to :class:`~dgn.caffe.net.CaffeNet`: reading ``.caffemodel`` and ``.prototxt`` files."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dgn.caffe.net import _MAX_AXES, CaffeLayer, CaffeNet
from dgn.caffe.schema import _NET, _V0_TO_NEW, _V1_TO_NEW
from dgn.caffe.text import _as_list, _normalise, parse_prototxt_text
from dgn.caffe.wire import _decode
from dgn.errors import DGNError


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


