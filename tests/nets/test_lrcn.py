import struct

import numpy as np
import pytest
import torch

from dgn.errors import DGNError
from dgn.nets.lrcn import (
    LRCN,
    LRCN_UCF101_SPACE,
    CaffeLSTM,
    LRCNConfig,
    caffe_lstm_to_torch,
    clip_markers,
    lrcn_ucf101,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def caffe_lstm(x, cont, w_xc, b_c, w_hc):
    """Caffe's LSTM layer written out (float64): gates stacked i, f, o, g; cont gates h and c."""
    steps, batch, _ = x.shape
    hidden = w_hc.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    out = np.zeros((steps, batch, hidden))
    for t in range(steps):
        m = cont[t][:, None]
        gates = x[t] @ w_xc.T + b_c + (m * h) @ w_hc.T
        i, f, o, g = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = m * sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out[t] = h
    return out


def random_blobs(rng, d: int, hidden: int):
    return (rng.normal(0, 0.5, (4 * hidden, d)), rng.normal(0, 0.5, 4 * hidden), rng.normal(0, 0.5, (4 * hidden, hidden)))


def lstm_from_caffe(w_xc, b_c, w_hc) -> CaffeLSTM:
    lstm = CaffeLSTM(w_xc.shape[1], w_hc.shape[1]).double()
    w_ih, b_ih, w_hh = caffe_lstm_to_torch(*(torch.from_numpy(a) for a in (w_xc, b_c, w_hc)))
    with torch.no_grad():
        lstm.weight_ih.copy_(w_ih)
        lstm.bias_ih.copy_(b_ih)
        lstm.weight_hh.copy_(w_hh)
    return lstm


def test_lstm_matches_caffe_equations_with_a_mid_sequence_reset(one_thread):
    rng = np.random.default_rng(0)
    w_xc, b_c, w_hc = random_blobs(rng, 5, 4)
    x = rng.normal(0, 1, (7, 3, 5))
    cont = np.ones((7, 3))
    cont[0] = 0
    cont[4, 1] = 0  # stream 1 starts a new clip at t = 4
    want = caffe_lstm(x, cont, w_xc, b_c, w_hc)
    got = lstm_from_caffe(w_xc, b_c, w_hc)(torch.from_numpy(x), torch.from_numpy(cont)).detach().numpy()
    assert np.abs(got - want).max() < 1e-12
    # the gate reordering is needed: Caffe's (i, f, o, g) blobs copied as they are give other outputs
    raw = CaffeLSTM(5, 4).double()
    with torch.no_grad():
        raw.weight_ih.copy_(torch.from_numpy(w_xc))
        raw.bias_ih.copy_(torch.from_numpy(b_c))
        raw.weight_hh.copy_(torch.from_numpy(w_hc))
    assert np.abs(raw(torch.from_numpy(x), torch.from_numpy(cont)).detach().numpy() - want).max() > 1e-2


def test_clip_marker_reset_forgets_the_past(one_thread):
    lstm = lstm_from_caffe(*random_blobs(np.random.default_rng(1), 6, 5))
    x = torch.randn(9, 1, 6, dtype=torch.float64)
    cont = clip_markers(9, 1).double()
    cont[5] = 0
    full = lstm(x, cont)
    alone = lstm(x[5:])  # the same frames as a fresh clip
    assert torch.allclose(full[5:], alone, atol=1e-12)
    assert not torch.allclose(lstm(x)[5:], alone, atol=1e-3)  # without the reset the past matters


def test_same_as_nn_lstm_with_zero_hidden_bias(one_thread):
    lstm = lstm_from_caffe(*random_blobs(np.random.default_rng(2), 6, 5))
    reference = torch.nn.LSTM(6, 5).double()
    reference.load_state_dict(lstm.torch_lstm_state())
    x = torch.randn(8, 2, 6, dtype=torch.float64)
    assert torch.allclose(lstm(x), reference(x)[0], atol=1e-12)
    assert not reference.bias_hh_l0.any()


def test_clip_markers_mark_each_clip_start():
    cont = clip_markers(48, 2, clip_length=16)
    assert cont.shape == (48, 2)
    assert (cont[[0, 16, 32]] == 0).all() and cont.sum() == 2 * 45


def test_released_lrcn_shapes_at_227(one_thread):
    torch.manual_seed(0)
    net = lrcn_ucf101().eval()
    assert net.pool5_shape == (384, 6, 6) and net.fc6.in_features == 13_824  # ceil-mode pools
    assert (net.conv1.kernel_size, net.conv1.stride, net.conv1.out_channels) == ((7, 7), (2, 2), 96)
    assert (net.conv2.out_channels, net.conv2.stride, net.conv2.groups) == (384, (2, 2), 2)
    assert (net.lstm.hidden_size, net.fc8.out_features) == (256, 101)
    assert LRCN_UCF101_SPACE.mean == (103.939, 116.779, 128.68) and LRCN_UCF101_SPACE.channel_order == "BGR"
    with torch.no_grad():
        logits = net(torch.randn(2, 1, 3, 227, 227) * 60)
    assert logits.shape == (2, 1, 101) and torch.isfinite(logits).all()


TINY = LRCNConfig(channels=(4, 6, 6, 6, 4), conv1=(3, 2, 0), conv2=(3, 1, 1), input_size=(19, 19), fc6=10,
                  hidden=3, num_classes=5)


def test_image_batch_is_a_batch_of_one_frame_clips(one_thread):
    net = LRCN(TINY).eval()
    x = torch.randn(4, 3, 19, 19) * 50
    assert torch.allclose(net(x), net(x.unsqueeze(0))[0])
    with pytest.raises(DGNError, match="LRCN input"):
        net(torch.randn(3, 19, 19))


# ----- a tiny synthetic .caffemodel, written with the protobuf wire format --------------------------------
def varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out += bytes([low | 0x80])
        else:
            return out + bytes([low])


def ld(num: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def blob(array: np.ndarray) -> bytes:
    shape = ld(7, ld(1, b"".join(varint(d) for d in array.shape)))
    data = struct.pack(f"<{array.size}f", *array.astype(np.float32).ravel())
    return ld(7, shape + ld(5, data))


def layer(name: str, kind: str, *blobs: np.ndarray) -> bytes:
    return ld(100, ld(1, name) + ld(2, kind) + b"".join(blob(b) for b in blobs))
