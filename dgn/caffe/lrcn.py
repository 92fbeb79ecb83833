"""The released LRCN's Caffe weights (Donahue et al.'s ``RGB_lstm_model_iter_30000.caffemodel``) as an
:class:`~dgn.nets.lrcn.LRCN`, read without Caffe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dgn.caffe import caffe_state_dict, read_caffemodel
from dgn.errors import DGNError
from dgn.models import load_checked
from dgn.nets.lrcn import CAFFE_NAMES, LRCN, caffe_lstm_to_torch, lrcn_ucf101


def lrcn_state_from_caffe(net, mapping: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """A state dict for :class:`LRCN` from a Caffe net read by ``dgn.caffe.read_caffemodel``.

    Layers with weights are mapped by ``mapping`` (default :data:`CAFFE_NAMES`; unmapped ones are skipped).
    The layer mapped to ``lstm`` must hold the three LSTM blobs W_xc (4H x D), b_c (4H), W_hc (4H x H);
    their gates are reordered from Caffe's (i, f, o, g) to (i, f, g, o).
    """
    mapping = dict(mapping or CAFFE_NAMES)
    state: dict[str, torch.Tensor] = {}
    found = set()
    for layer in net.layers:
        target = mapping.get(layer.name)
        if target is None or not layer.blobs:
            continue
        found.add(target)
        if target == "lstm":
            if len(layer.blobs) != 3:
                raise DGNError(f"Caffe layer {layer.name!r} has {len(layer.blobs)} blobs; an LSTM has 3 (W_xc, b_c, W_hc)")
            w_xc, b_c, w_hc = (torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)) for b in layer.blobs)
            hidden = int(w_hc.shape[-1])
            # V1 files pad blob shapes to 4D with leading 1s
            w_xc, b_c, w_hc = w_xc.reshape(4 * hidden, -1), b_c.reshape(-1), w_hc.reshape(4 * hidden, hidden)
            state["lstm.weight_ih"], state["lstm.bias_ih"], state["lstm.weight_hh"] = caffe_lstm_to_torch(w_xc, b_c, w_hc)
        else:
            part = caffe_state_dict(type(net)(net.name, [layer]), {layer.name: target})
            state.update({k: v.float() for k, v in part.items()})
    missing = [name for name in dict.fromkeys(mapping.values()) if name not in found]
    if missing:
        raise DGNError(f"the Caffe net has no weights for {', '.join(missing)}; layers with weights: "
                       f"{[x.name for x in net.layers if x.blobs]} (pass a mapping from these names)")
    return state


def load_lrcn_caffemodel(
    path: str | Path, model: LRCN | None = None, mapping: Mapping[str, str] | None = None
) -> LRCN:
    """Load the released LRCN's ``.caffemodel`` (e.g. ``RGB_lstm_model_iter_30000.caffemodel``) into ``model``.

    Args:
        path: the Caffe weights, read by ``dgn.caffe.read_caffemodel`` (no Caffe needed).
        model: the module to fill (default: a new :func:`lrcn_ucf101`).
        mapping: Caffe layer name -> module name (default :data:`CAFFE_NAMES`).

    Returns:
        The model, in eval mode, every parameter loaded and shape-checked.
    """
    model = model if model is not None else lrcn_ucf101()
    state = lrcn_state_from_caffe(read_caffemodel(path), mapping)
    load_checked(model, state, str(path))
    return model.eval()
