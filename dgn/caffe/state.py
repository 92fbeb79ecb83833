"""Weights: Caffe blobs as a PyTorch state dict, and loading them into a module."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dgn.caffe.modules import LoadReport, sanitize_name
from dgn.caffe.net import CaffeLayer, CaffeNet
from dgn.errors import DGNError

_BLOB_PARAM_NAMES = ("weight", "bias")
# Layers whose per-channel blobs may be stored with extra 1-sized axes (or none, for a shared PReLU slope).
_RESHAPEABLE = frozenset({"BatchNorm", "Scale", "Bias", "PReLU"})


def _blob_names(lay: CaffeLayer) -> tuple[str, ...]:
    """The module attribute names of a layer's blobs, in Caffe's order."""
    if lay.type == "BatchNorm":
        return ("moving_mean", "moving_var", "scale_factor")
    if lay.type == "Bias" or (lay.type == "Scale" and len(lay.bottoms) > 1):
        return ("bias",)  # a two-bottom Scale stores only its bias
    return _BLOB_PARAM_NAMES


def _state_items(
    net: CaffeNet, mapping: dict[str, str] | None
) -> list[tuple[str, torch.Tensor, CaffeLayer, int]]:
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
        names = _blob_names(lay)
        for i, blob in enumerate(lay.blobs):
            arr = blob.T if (transpose and i == 0 and blob.ndim == 2) else blob
            pname = names[i] if i < len(names) else f"blob{i}"
            items.append((f"{prefix}.{pname}", torch.from_numpy(np.ascontiguousarray(arr)), lay, i))
    return items


def caffe_state_dict(net: CaffeNet, mapping: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Caffe blobs as a PyTorch state dict.

    Blob 0 becomes ``{name}.weight``, blob 1 ``{name}.bias`` (further blobs ``{name}.blob{i}``);
    BatchNorm's three blobs become ``moving_mean``, ``moving_var`` and ``scale_factor``, and the one
    blob of a Bias layer or of a two-bottom Scale layer ``bias``.
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

    Buffers that a submodule lists in ``caffe_buffers`` (BatchNorm's statistics) are filled too.
    BatchNorm, Scale, Bias and PReLU blobs may differ from their target by 1-sized axes only.

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
    for prefix, sub in module.named_modules():
        for name in getattr(sub, "caffe_buffers", ()):
            params[f"{prefix}.{name}" if prefix else name] = getattr(sub, name)
    report = LoadReport()
    todo = []
    for key, tensor, lay, i in _state_items(net, mapping):
        target = params.get(key)
        if target is None:
            report.unmapped.append(key)
            continue
        if lay.type in _RESHAPEABLE and _squeezed(tensor) == _squeezed(target):
            tensor = tensor.reshape(target.shape)
        if tuple(target.shape) != tuple(tensor.shape):
            raise DGNError(
                f"Caffe layer {lay.name!r} blob {i} has shape {tuple(tensor.shape)} but module parameter "
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


def _squeezed(t: torch.Tensor) -> tuple[int, ...]:
    """The shape without its 1-sized axes (equal for two tensors means the same values in the same order)."""
    return tuple(d for d in t.shape if d != 1)
