"""The released LRCN's caffemodel read into an LRCN (dgn.caffe.lrcn)."""


import numpy as np
import pytest
import torch

from dgn.caffe.lrcn import load_lrcn_caffemodel
from dgn.errors import DGNError
from dgn.nets.lrcn import (
    LRCN,
    clip_markers,
)
from tests.nets.test_lrcn import TINY, caffe_lstm, layer, ld, random_blobs


def test_caffemodel_loads_with_gate_conversion(tmp_path, one_thread):
    rng = np.random.default_rng(3)
    shapes = LRCN(TINY).state_dict()
    parts, blobs = [], {}
    for caffe_name, name, kind in [("conv1", "conv1", "Convolution"), ("conv2", "conv2", "Convolution"),
                                   ("conv3", "conv3", "Convolution"), ("conv4", "conv4", "Convolution"),
                                   ("conv5", "conv5", "Convolution"), ("fc6", "fc6", "InnerProduct"),
                                   ("fc8-final", "fc8", "InnerProduct")]:
        w = rng.normal(0, 0.3, tuple(shapes[f"{name}.weight"].shape)).astype(np.float32)
        b = rng.normal(0, 0.1, tuple(shapes[f"{name}.bias"].shape)).astype(np.float32)
        blobs[name] = (w, b)
        parts.append(layer(caffe_name, kind, w, b))
    w_xc, b_c, w_hc = (a.astype(np.float32) for a in random_blobs(rng, TINY.fc6, TINY.hidden))
    parts.insert(6, layer("lstm1", "LSTM", w_xc, b_c, w_hc))
    path = tmp_path / "lrcn.caffemodel"
    path.write_bytes(ld(1, "lrcn") + b"".join(parts))

    net = load_lrcn_caffemodel(path, LRCN(TINY))
    assert np.array_equal(net.conv2.weight.detach().numpy(), blobs["conv2"][0])
    assert np.array_equal(net.fc8.bias.detach().numpy(), blobs["fc8"][1])
    h = TINY.hidden  # PyTorch's g block is Caffe's 4th, its o block Caffe's 3rd
    assert np.array_equal(net.lstm.weight_ih.detach().numpy()[2 * h : 3 * h], w_xc[3 * h :])
    assert np.array_equal(net.lstm.weight_hh.detach().numpy()[3 * h :], w_hc[2 * h : 3 * h])
    # the whole net: per-frame features, then Caffe's LSTM equations and fc8, with a reset at t = 2
    video = torch.randn(4, 2, 3, 19, 19) * 50
    cont = clip_markers(4, 2)
    cont[2, 0] = 0
    with torch.no_grad():
        got = net(video, cont).numpy()
        feats = net.features(video.view(8, 3, 19, 19)).view(4, 2, -1).double().numpy()
    hidden = caffe_lstm(feats, cont.numpy(), w_xc, b_c, w_hc)
    want = hidden @ blobs["fc8"][0].T.astype(np.float64) + blobs["fc8"][1]
    assert np.abs(got - want).max() < 1e-4

    (tmp_path / "short.caffemodel").write_bytes(ld(1, "lrcn") + b"".join(parts[:5]))
    with pytest.raises(DGNError, match="no weights for fc6, lstm, fc8"):
        load_lrcn_caffemodel(tmp_path / "short.caffemodel", LRCN(TINY))
