"""dgn.caffe: the protobuf wire decoder, the text-format parser, Caffe layer semantics, real
Caffe nets (LeNet / MNIST, CIFAR-10 quick / CIFAR-10 JPEGs, SqueezeNet) and hostile files."""

from __future__ import annotations

import gzip
import io
import math
import random
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgn.caffe import (
    SUPPORTED_LAYER_TYPES,
    CaffeNet,
    CaffePool2d,
    build_module,
    caffe_state_dict,
    inspect_caffemodel,
    load_into,
    parse_prototxt_text,
    read_caffemodel,
    read_prototxt,
)
from dgn.errors import DGNError
from tests.cifar import CIFAR_SUBSET_EVERY

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------------------------------------
# A tiny protobuf encoder, written independently of the decoder under test
# ---------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(num: int, wt: int) -> bytes:
    return varint(num << 3 | wt)


def vi(num: int, value: int) -> bytes:
    return key(num, 0) + varint(value)


def ld(num: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return key(num, 2) + varint(len(payload)) + payload


def f32(num: int, x: float) -> bytes:
    return key(num, 5) + struct.pack("<f", x)


def f64(num: int, x: float) -> bytes:
    return key(num, 1) + struct.pack("<d", x)


def packed_f32(num: int, xs) -> bytes:
    return ld(num, struct.pack(f"<{len(xs)}f", *xs))


def packed_f64(num: int, xs) -> bytes:
    return ld(num, struct.pack(f"<{len(xs)}d", *xs))


def shape(*dims: int) -> bytes:  # BlobShape, packed int64 dims
    return ld(7, ld(1, b"".join(varint(d) for d in dims)))


def write(tmp_path: Path, data: bytes, name: str = "net.caffemodel") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# Wire format on hand-encoded bytes
# ---------------------------------------------------------------------------------------------


def test_current_format_packed_and_unpacked_floats(tmp_path):
    w = [0.5, -1.25, 2.0, 3.5, -0.125, 7.0]
    b = [1.5, -2.5]
    blob_w = shape(2, 3) + packed_f32(5, w)
    # unpacked floats, interrupted by an unknown field: the run must stop and resume there
    blob_b = shape(2) + f32(5, b[0]) + vi(99, 7) + f32(5, b[1])
    layer = (
        ld(1, "fc")
        + ld(2, "InnerProduct")
        + ld(3, "data")
        + ld(4, "fc")
        + ld(7, blob_w)
        + ld(7, blob_b)
        + ld(117, vi(1, 2) + vi(5, -1))  # num_output 2, axis -1 (a 10-byte varint)
        + ld(8, vi(1, 1))  # include { phase: TEST }
    )
    data = ld(1, "hand") + ld(3, "data") + vi(4, 1) + vi(4, 3) + vi(4, 1) + vi(4, 1) + ld(100, layer)
    net = read_caffemodel(write(tmp_path, data))
    assert net.name == "hand"
    assert net.inputs == {"data": (1, 3, 1, 1)}
    (lay,) = net.layers
    assert (lay.name, lay.type, lay.bottoms, lay.tops) == ("fc", "InnerProduct", ["data"], ["fc"])
    assert lay.blobs[0].dtype == np.float32 and lay.blobs[0].shape == (2, 3)
    np.testing.assert_array_equal(lay.blobs[0], np.array(w, np.float32).reshape(2, 3))
    np.testing.assert_array_equal(lay.blobs[1], np.array(b, np.float32))
    assert lay.params["inner_product_param"] == {"num_output": 2, "axis": -1}
    assert lay.params["include"] == [{"phase": "TEST"}]


def test_long_unpacked_run_and_double_data(tmp_path):
    rng = np.random.default_rng(0)
    vals = rng.standard_normal(1000).astype(np.float32)
    blob_f = shape(10, 100) + b"".join(f32(5, float(v)) for v in vals)
    dvals = rng.standard_normal(6)
    blob_d = shape(2, 3) + packed_f64(8, dvals[:4]) + f64(8, dvals[4]) + f64(8, dvals[5])
    layer = ld(1, "c") + ld(2, "Convolution") + ld(7, blob_f) + ld(7, blob_d)
    net = read_caffemodel(write(tmp_path, ld(100, layer)))
    f, d = net.layers[0].blobs
    np.testing.assert_array_equal(f, vals.reshape(10, 100))
    assert d.dtype == np.float64 and d.shape == (2, 3)
    np.testing.assert_array_equal(d.ravel(), dvals)


def test_v1_legacy_shapes_and_enum_types(tmp_path):
    ip_w = np.arange(12, dtype=np.float32)
    legacy = lambda n, c, h, w: vi(1, n) + vi(2, c) + vi(3, h) + vi(4, w)
    ip = (
        ld(4, "ip1")
        + vi(5, 14)  # INNER_PRODUCT
        + ld(2, "pool")
        + ld(3, "ip1")
        + ld(6, legacy(1, 1, 3, 4) + packed_f32(5, ip_w))
        + ld(6, legacy(1, 1, 1, 3) + packed_f32(5, [1, 2, 3]))
        + ld(32, vi(1, 0))  # include { phase: TRAIN }
    )
    conv = (
        ld(4, "conv1")
        + vi(5, 4)  # CONVOLUTION
        + ld(6, legacy(2, 1, 3, 3) + packed_f32(5, [0.0] * 18))
        + ld(6, legacy(1, 1, 1, 2) + packed_f32(5, [0.0] * 2))
        + ld(10, vi(1, 2) + vi(4, 3) + vi(3, 1))  # num_output 2, kernel_size 3, pad 1 (unpacked repeated)
    )
    relu = ld(4, "relu") + vi(5, 18) + ld(2, "ip1") + ld(3, "ip1")
    net = read_caffemodel(write(tmp_path, ld(1, "v1") + ld(2, conv) + ld(2, ip) + ld(2, relu)))
    c, i, r = net.layers
    assert (c.type, i.type, r.type) == ("Convolution", "InnerProduct", "ReLU")
    assert [b.shape for b in c.blobs] == [(2, 1, 3, 3), (2,)]
    assert [b.shape for b in i.blobs] == [(3, 4), (3,)]
    np.testing.assert_array_equal(i.blobs[0], ip_w.reshape(3, 4))
    assert c.params["convolution_param"] == {"num_output": 2, "kernel_size": [3], "pad": [1]}
    assert i.params["include"] == [{"phase": "TRAIN"}]
    assert r.bottoms == r.tops == ["ip1"]


def test_v0_layer_nested_in_v1(tmp_path):
    v0 = (
        ld(1, "conv1")
        + ld(2, "conv")
        + vi(3, 4)  # num_output
        + vi(8, 5)  # kernelsize
        + vi(10, 2)  # stride
        + ld(50, vi(1, 4) + vi(2, 3) + vi(3, 5) + vi(4, 5) + packed_f32(5, [0.25] * 300))
        + ld(50, vi(1, 1) + vi(2, 1) + vi(3, 1) + vi(4, 4) + packed_f32(5, [1, 2, 3, 4]))
    )
    net = read_caffemodel(write(tmp_path, ld(2, ld(1, v0) + ld(2, "data") + ld(3, "conv1"))))
    (lay,) = net.layers
    assert (lay.name, lay.type, lay.bottoms, lay.tops) == ("conv1", "Convolution", ["data"], ["conv1"])
    assert lay.params["convolution_param"] == {"num_output": 4, "kernel_size": [5], "stride": [2]}
    assert [b.shape for b in lay.blobs] == [(4, 3, 5, 5), (4,)]


HOSTILE = {
    "length past end": ld(1, "x")[:-1] + ld(100, b"abc")[:3],
    "huge length": key(100, 2) + varint(2**62) + b"\x00" * 10,
    "truncated varint": b"\x08\xff\xff",
    "11-byte varint": b"\x08" + b"\xff" * 10 + b"\x01",
    "group wire type": key(1, 3) + b"\x00",
    "wire type 7": bytes([0x0F]),
    "field number 0": b"\x02\x00",
    "odd packed floats": ld(100, ld(7, ld(5, b"\x00" * 7))),
    "shape/data mismatch": ld(100, ld(7, shape(1000, 1000, 1000) + packed_f32(5, [1.0, 2.0]))),
    "too many axes": ld(100, ld(7, shape(*([1] * 40)) + packed_f32(5, [1.0]))),
    "negative dim": ld(100, ld(7, shape(-2, -3) + packed_f32(5, [1.0] * 6))),
    "legacy mismatch": ld(2, ld(6, vi(1, 1) + vi(2, 1) + vi(3, 10**9) + vi(4, 10**9))),
    "varint for a string": vi(1, 5),
    "float for a message": ld(100, f32(7, 1.0)),
    "both layer and layers": ld(100, ld(1, "a")) + ld(2, ld(4, "b")),
    "input_dim count": ld(3, "data") + vi(4, 1) + vi(4, 3),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bytes_raise_dgnerror(tmp_path, case):
    path = write(tmp_path, HOSTILE[case])
    t0 = time.perf_counter()
    with pytest.raises(DGNError):
        read_caffemodel(path)
    assert time.perf_counter() - t0 < 1.0


def test_missing_file_is_dgnerror(tmp_path):
    with pytest.raises(DGNError, match="cannot read"):
        read_caffemodel(tmp_path / "nope.caffemodel")


# ---------------------------------------------------------------------------------------------
# Text format
# ---------------------------------------------------------------------------------------------


def test_text_format_parser():
    text = r"""
    # a comment
    name: "a \"quoted\"\tname" ' and more'   # adjacent strings concatenate
    input: "data"
    input_shape { dim: [1, 3] dim: 0x10 dim: 16 }
    layer < name: 'x\101\x42' type: "ReLU" bottom: "data" top: "data"
            relu_param: { negative_slope: -1.5e-1 } include { phase: TEST } >;
    layers { type: CONVOLUTION, blobs_lr: 1 blobs_lr: 2 }
    extra { value: -inf flag: true other: False e: ENUM_NAME f: 2.5f }
    [ext.field]: 3
    """
    d = parse_prototxt_text(text)
    assert d["name"] == 'a "quoted"\tname and more'
    assert d["input"] == ["data"]
    assert d["input_shape"] == [{"dim": [1, 3, 16, 16]}]
    (lay,) = d["layer"]
    assert lay["name"] == "xAB"
    assert lay["relu_param"] == {"negative_slope": -0.15}
    assert lay["include"] == [{"phase": "TEST"}]
    assert d["layers"] == [{"type": "CONVOLUTION", "blobs_lr": [1, 2]}]
    extra = d["extra"]
    assert extra["value"] == -math.inf and extra["flag"] is True and extra["other"] is False
    assert extra["e"] == "ENUM_NAME" and extra["f"] == 2.5
    assert d["[ext.field]"] == 3


@pytest.mark.parametrize(
    "text, where",
    [
        ("layer { name: 'x' ", "missing"),
        ("layer { name: 'x' }}", "line 1"),
        ("a: 1\nb: @", "line 2"),
        ("a: 'unterminated\n'", "line 1"),
        ("a: '\\q'", "escape"),
        ("a 1", "expected ':'"),
        ("a: [1, 2", "end"),
        (" a {" * 5000, "nested deeper"),
    ],
)
def test_text_format_errors(text, where):
    with pytest.raises(DGNError, match=where):
        parse_prototxt_text(text)


def test_v0_text_prototxt():
    net = _net("""name: "old" input: "data" input_dim: 1 input_dim: 3 input_dim: 9 input_dim: 9
    layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2 biasterm: false }
             bottom: "data" top: "conv1" }
    layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "conv1" top: "pool1" }
    """)
    conv, pool = net.layers
    assert (conv.name, conv.type, pool.type) == ("conv1", "Convolution", "Pooling")
    assert conv.params["convolution_param"] == {
        "num_output": 4, "bias_term": False, "kernel_size": [3], "stride": [2]
    }  # fmt: skip
    m = build_module(net)
    assert m.conv1.bias is None and m.blob_shapes["pool1"] == (1, 4, 2, 2)


def test_prototxt_type_errors_are_dgnerror(tmp_path):
    p = tmp_path / "bad.prototxt"
    p.write_text('layer { name: "c" type: "Convolution" convolution_param { num_output: "many" } }')
    with pytest.raises(DGNError, match="num_output"):
        read_prototxt(p)


# ---------------------------------------------------------------------------------------------
# Caffe layer semantics
# ---------------------------------------------------------------------------------------------


def caffe_pool_loop(x: np.ndarray, mode: str, k: int, s: int, p: int, ceil: bool = True) -> np.ndarray:
    """Caffe's PoolingLayer::Forward_cpu written out as loops, for one (H, W) plane."""
    h, w = x.shape
    span_h, span_w = h + 2 * p - k, w + 2 * p - k
    rnd = math.ceil if ceil else math.floor
    oh, ow = rnd(span_h / s) + 1, rnd(span_w / s) + 1
    if p > 0:
        oh -= (oh - 1) * s >= h + p
        ow -= (ow - 1) * s >= w + p
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[hs:he, ws:we]
            if mode == "MAX":  # Caffe starts from -FLT_MAX, which an empty window keeps
                out[i, j] = win.max() if win.size else np.finfo(np.float32).min
            else:  # an empty window makes Caffe divide by a size <= 0 (NaN or -0); we return 0
                out[i, j] = win.sum() / size if win.size else 0.0
    return out


def test_ave_pooling_with_pad_matches_hand_computation():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # Caffe: ceil((4 + 2 - 3) / 2) + 1 = 3; windows rows [-1,2) [1,4) [3,5); divisors 3, 3, 2 per axis
    y = CaffePool2d("AVE", (3, 3), (2, 2), (1, 1))(x)[0, 0]
    expected = torch.tensor(
        [
            [(0 + 1 + 4 + 5) / 9, (1 + 2 + 3 + 5 + 6 + 7) / 9, (3 + 7) / 6],
            [(4 + 5 + 8 + 9 + 12 + 13) / 9, 90 / 9, (7 + 11 + 15) / 6],
            [(12 + 13) / 6, (13 + 14 + 15) / 6, 15 / 4],
        ]
    )
    torch.testing.assert_close(y, expected)
    ym = CaffePool2d("MAX", (3, 3), (2, 2), (1, 1))(x)[0, 0]
    torch.testing.assert_close(ym, torch.tensor([[5.0, 7, 7], [13, 15, 15], [13, 15, 15]]))


def test_pooling_drops_window_starting_in_padding():
    # H=5, k=2, s=2, p=1: ceil(5/2)+1 = 4 windows, but the 4th starts at 6 >= H+p -> 3
    y = CaffePool2d("MAX", (2, 2), (2, 2), (1, 1))(torch.randn(1, 1, 5, 5))
    assert y.shape[-2:] == (3, 3)


@pytest.mark.parametrize("mode", ["MAX", "AVE"])
def test_pooling_matches_caffe_loops(mode):
    rng = np.random.default_rng(1)
    for _ in range(60):
        k = int(rng.integers(1, 5))
        s = int(rng.integers(1, 4))
        p = int(rng.integers(0, k))  # Caffe requires pad < kernel
        h, w = int(rng.integers(max(1, k - 2 * p), 12)), int(rng.integers(max(1, k - 2 * p), 12))
        ceil = bool(rng.integers(0, 2))
        x = rng.standard_normal((h, w))
        want = caffe_pool_loop(x, mode, k, s, p, ceil)
        got = CaffePool2d(mode, (k, k), (s, s), (p, p), ceil)(torch.from_numpy(x)[None, None])[0, 0]
        np.testing.assert_allclose(
            got.numpy(), want, rtol=1e-12, atol=1e-12, err_msg=f"{k=} {s=} {p=} {h=} {w=}"
        )
        if ceil and 2 * p <= k and s <= k:
            # PyTorch's ceil_mode agrees with Caffe here (pad > 0 included), with count_include_pad for AVE
            fn = F.max_pool2d if mode == "MAX" else F.avg_pool2d
            ref = fn(torch.from_numpy(x)[None, None], k, s, p, ceil_mode=True)[0, 0]
            np.testing.assert_allclose(ref.numpy(), want, rtol=1e-12, atol=1e-12)


def test_pooling_keeps_window_past_unpadded_input_like_caffe():
    # k=1, s=3, p=0 on 5 pixels: Caffe ceil(4/3)+1 = 3 windows (starts 0, 3, 6); PyTorch drops the third
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    y = CaffePool2d("MAX", (1, 1), (3, 3), (0, 0))(x)[0, 0]
    assert F.max_pool2d(x, 1, 3, ceil_mode=True).shape[-2:] == (2, 2)
    lowest = float(np.finfo(np.float32).min)
    torch.testing.assert_close(y, torch.tensor([[0.0, 3, lowest], [15, 18, lowest], [lowest] * 3]))
    ya = CaffePool2d("AVE", (1, 1), (3, 3), (0, 0))(x)[0, 0]
    torch.testing.assert_close(ya, torch.tensor([[0.0, 3, 0], [15, 18, 0], [0, 0, 0]]))


def test_lrn_within_channel_matches_direct_loop():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 7))
    n, alpha, beta = 3, 0.7, 0.75
    want = np.empty_like(x)
    half = (n - 1) // 2
    for b in range(2):
        for c in range(3):
            for i in range(6):
                for j in range(7):
                    win = x[b, c, max(0, i - half) : i + half + 1, max(0, j - half) : j + half + 1]
                    want[b, c, i, j] = x[b, c, i, j] / (1 + alpha / n**2 * (win**2).sum()) ** beta
    text = f"""input: "data" input_dim: 2 input_dim: 3 input_dim: 6 input_dim: 7
    layer {{ name: "norm" type: "LRN" bottom: "data" top: "norm"
      lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: 5 norm_region: WITHIN_CHANNEL }} }}"""
    net = _net(text)
    got = build_module(net).double()(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def test_lrn_across_channels_matches_direct_loop():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 7, 3, 3))
    n, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    want = np.empty_like(x)
    for c in range(7):
        sq = (x[0, max(0, c - 2) : c + 3] ** 2).sum(axis=0)
        want[0, c] = x[0, c] / (k + alpha / n * sq) ** beta
    text = f"""input: "data" input_dim: 1 input_dim: 7 input_dim: 3 input_dim: 3
    layer {{ name: "norm" type: "LRN" bottom: "data" top: "norm"
      lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: {k} }} }}"""
    got = build_module(_net(text)).double()(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def _net(text: str) -> CaffeNet:
    """Read prototxt text through the public file reader."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.prototxt"
        path.write_text(text)
        return read_prototxt(path)


def test_dag_layers_inplace_and_names():
    text = """name: "dag"
    layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
    layer { name: "sp/1" type: "Split" bottom: "a" top: "a1" top: "a2" }
    layer { name: "sum.x" type: "Eltwise" bottom: "a1" bottom: "b" top: "s" eltwise_param { coeff: 2 coeff: -1 } }
    layer { name: "max" type: "Eltwise" bottom: "a2" bottom: "b" top: "m" eltwise_param { operation: MAX } }
    layer { name: "forward" type: "ReLU" bottom: "m" top: "m" relu_param { negative_slope: 0.1 } }
    layer { name: "cat" type: "Concat" bottom: "s" bottom: "m" top: "c" }
    layer { name: "flat" type: "Flatten" bottom: "c" top: "f" }
    layer { name: "rs" type: "Reshape" bottom: "f" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 8 } } }
    layer { name: "sm" type: "Softmax" bottom: "r" top: "r" softmax_param { axis: 2 } }
    layer { name: "drop" type: "Dropout" bottom: "r" top: "r" }
    layer { name: "train_only" type: "Sigmoid" bottom: "r" top: "r" include { phase: TRAIN } }
    """
    m = build_module(_net(text))
    assert m.caffe_names["sp/1"] == "sp_1" and m.caffe_names["sum.x"] == "sum_x"
    assert m.caffe_names["forward"] != "forward"  # must not shadow nn.Module.forward
    assert "train_only" not in m.caffe_names
    assert m.input_names == ["a", "b"]
    assert m.blob_shapes["r"] == (2, 12, 8)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    blobs = m(a, b=b, return_all=True)
    s, mx = 2 * a - b, F.leaky_relu(torch.maximum(a, b), 0.1)
    torch.testing.assert_close(blobs["s"], s)
    torch.testing.assert_close(blobs["m"], mx)
    want = torch.softmax(torch.cat([s, mx], 1).reshape(2, 12, 8), dim=2)
    torch.testing.assert_close(m(a, b), want)
    assert dict(m.named_modules())["sum_x"] is m.sum_x


def test_unsupported_type_names_layer_and_choices():
    text = """input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
    layer { name: "spp1" type: "SPP" bottom: "data" top: "spp1" }"""
    with pytest.raises(DGNError) as err:
        build_module(_net(text))
    msg = str(err.value)
    assert "spp1" in msg and "'SPP'" in msg and "Convolution" in msg and "BatchNorm" in msg
    assert all(t in msg for t in SUPPORTED_LAYER_TYPES)


def test_missing_bottom_and_input_shape_errors():
    with pytest.raises(DGNError, match="no earlier layer"):
        build_module(_net('input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n'
                          'layer { name: "r" type: "ReLU" bottom: "y" top: "y" }'))  # fmt: skip
    with pytest.raises(DGNError, match="input_shape"):
        build_module(_net('layer { name: "d" type: "Data" top: "data" top: "label" }'))


def test_deconvolution_shapes_and_weight_layout():
    text = """input: "x" input_shape { dim: 1 dim: 4 dim: 5 dim: 5 }
    layer { name: "up" type: "Deconvolution" bottom: "x" top: "y"
      convolution_param { num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2 } }"""
    m = build_module(_net(text))
    assert m.blob_shapes["y"] == (1, 6, 10, 10)  # 2*(5-1) + 4 - 2
    assert tuple(m.up.weight.shape) == (4, 3, 4, 4)  # Caffe: (C_in, C_out / group, kh, kw)
    assert m(torch.randn(1, 4, 5, 5)).shape == (1, 6, 10, 10)


# ---------------------------------------------------------------------------------------------
# Real Caffe nets
# ---------------------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (MNIST's format): magic (0, 0, dtype 0x08, ndim), big-endian dims, uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and dtype == 0x08
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


LENET_SHAPES = {
    "conv1": [(20, 1, 5, 5), (20,)],
    "conv2": [(50, 20, 5, 5), (50,)],
    "ip1": [(500, 800), (500,)],
    "ip2": [(10, 500), (10,)],
}
CIFAR_SHAPES = {
    "conv1": [(32, 3, 5, 5), (32,)],
    "conv2": [(32, 32, 5, 5), (32,)],
    "conv3": [(64, 32, 5, 5), (64,)],
    "ip1": [(64, 1024), (64,)],  # 64 x 4 x 4 after three ceil-rounded poolings of 32 x 32
    "ip2": [(10, 64), (10,)],
}


def blob_shapes(net: CaffeNet) -> dict[str, list[tuple[int, ...]]]:
    return {lay.name: [b.shape for b in lay.blobs] for lay in net.layers if lay.blobs}


def implied_shapes(module) -> dict[str, list[tuple[int, ...]]]:
    out: dict[str, list[tuple[int, ...]]] = {}
    for caffe_name, key in module.caffe_names.items():
        params = list(getattr(module, key).parameters())
        if params:
            out[caffe_name] = [tuple(p.shape) for p in params]
    return out


def test_lenet_current_format_classifies_mnist(fixtures_dir):
    d = fixtures_dir / "caffe" / "lenet_mnist"
    net = read_caffemodel(d / "lenet_iter_10000.caffemodel")
    assert blob_shapes(net) == LENET_SHAPES
    assert all(b.dtype == np.float32 for lay in net.layers for b in lay.blobs)
    proto = read_prototxt(d / "lenet.prototxt")
    assert proto.inputs == {"data": (64, 1, 28, 28)}
    assert implied_shapes(build_module(proto)) == LENET_SHAPES  # what the prototxt alone implies
    table = inspect_caffemodel(d / "lenet_iter_10000.caffemodel")
    assert "ip1" in table and "(500, 800)" in table and "431,080" in table

    module = build_module(d / "lenet.prototxt", d / "lenet_iter_10000.caffemodel")
    assert module.load_report.missing == [] and len(module.load_report.loaded) == 8
    images = read_idx(fixtures_dir / "data" / "mnist_test" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fixtures_dir / "data" / "mnist_test" / "t10k-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) * 0.00390625)[:, None]  # Caffe LeNet scale 1/256
    with torch.no_grad():
        probs = torch.cat([module(chunk) for chunk in x.split(2500)])
    torch.testing.assert_close(probs.sum(1), torch.ones(len(x)))
    accuracy = (probs.argmax(1).numpy() == labels).mean()
    assert accuracy > 0.95, accuracy  # measured 0.9914


def load_cifar_jpegs(archive: Path, every: int = CIFAR_SUBSET_EVERY) -> tuple[np.ndarray, np.ndarray]:
    """Every ``every``-th test JPEG of each class (the heavy tests' fixed subset) as uint8 (N, 32, 32, 3) RGB
    plus labels, read straight from the tarball."""
    from PIL import Image

    images, labels = [], []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or not member.name.endswith(".jpg") or parts[-2] not in CIFAR_CLASSES:
                continue
            if int(Path(member.name).stem) % every:
                continue
            data = tar.extractfile(member).read()
            images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            labels.append(CIFAR_CLASSES.index(parts[-2]))
    return np.stack(images), np.array(labels)


def test_cifar10_quick_v1_format_classifies_jpegs(fixtures_dir):
    d = fixtures_dir / "caffe" / "cifar10_quick_v1"
    net = read_caffemodel(d / "cifar10_quick_iter_5000.caffemodel")
    assert [lay.type for lay in net.layers][:3] == ["Data", "Convolution", "Pooling"]
    assert blob_shapes(net) == CIFAR_SHAPES
    proto = read_prototxt(d / "cifar10_quick.prototxt")
    assert proto.inputs == {"data": (1, 3, 32, 32)}
    assert implied_shapes(build_module(proto)) == CIFAR_SHAPES

    module = build_module(proto, net)
    images, labels = load_cifar_jpegs(
        fixtures_dir / "data" / "cifar10_test_jpg" / "cifar10_test_jpg_full.tar.gz"
    )
    assert images.shape == (2000, 32, 32, 3) and np.bincount(labels).tolist() == [200] * 10
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    # The training mean.binaryproto was never published: the per-pixel mean of these images stands in.
    x -= x.mean(axis=0, keepdims=True)

    def accuracy(batch: np.ndarray, want: np.ndarray) -> float:
        with torch.no_grad():
            out = torch.cat([module(c) for c in torch.from_numpy(batch).split(2500)])
        return float((out.argmax(1).numpy() == want).mean())

    # Channel order: Caffe's convert_cifar_data copied the binary CIFAR planes as they are, R, G, B.
    # Measured: RGB 0.734 on all 10,000 images, BGR 0.585; on this subset of 2,000, 0.736 and 0.594.
    rgb = accuracy(x, labels)
    assert rgb >= 0.70, rgb
    assert accuracy(np.ascontiguousarray(x[:, ::-1]), labels) < rgb - 0.08

    # The train/test prototxt gives the same net once its data, accuracy and loss layers are skipped.
    tt = build_module(d / "cifar10_quick_train_test.prototxt", net, phase="TEST", input_shape=(1, 3, 32, 32))
    assert tt.output_name == "ip2" and "accuracy" not in tt.caffe_names and tt.input_names == ["data"]
    batch = torch.from_numpy(x[:64])
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(tt(batch), 1), module(batch))


def test_squeezenet_prototxt_builds(fixtures_dir):
    path = fixtures_dir / "caffe" / "squeezenet" / "deploy_v1.1.prototxt"
    net = read_prototxt(path)
    assert len(net.layers) == 67
    concats = [lay for lay in net.layers if lay.type == "Concat"]
    assert [c.name for c in concats] == [f"fire{i}/concat" for i in range(2, 10)]
    assert all(len(c.bottoms) == 2 for c in concats)
    assert net.inputs == {"data": (10, 3, 227, 227)}
    module = build_module(net, input_shape=(1, 3, 227, 227))
    # ceil-rounded poolings give SqueezeNet's 56 / 28 / 14 grids (floor would give 55 / 27 / 13)
    assert module.blob_shapes["pool1"] == (1, 64, 56, 56)
    assert module.blob_shapes["conv10"] == (1, 1000, 14, 14)
    assert module.blob_shapes["fire9/concat"] == (1, 512, 14, 14)
    assert "fire2_squeeze1x1" in dict(module.named_modules())
    with torch.no_grad():
        out = module(torch.randn(1, 3, 227, 227))
    assert out.shape == (1, 1000, 1, 1)
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


# ---------------------------------------------------------------------------------------------
# Weights: state dicts and loading
# ---------------------------------------------------------------------------------------------


def test_state_dict_and_load_into_checks(fixtures_dir):
    d = fixtures_dir / "caffe" / "lenet_mnist"
    weights = read_caffemodel(d / "lenet_iter_10000.caffemodel")
    sd = caffe_state_dict(weights, {"ip2": "classifier"})
    assert set(sd) == {
        f"{n}.{p}" for n in ("conv1", "conv2", "ip1", "classifier") for p in ("weight", "bias")
    }
    np.testing.assert_array_equal(sd["conv1.weight"].numpy(), weights.layer("conv1").blobs[0])

    module = build_module(d / "lenet.prototxt")
    report = load_into(module, weights, strict=False)
    assert report.unmapped == [] and report.missing == []
    torch.testing.assert_close(module.ip1.weight.detach(), torch.from_numpy(weights.layer("ip1").blobs[0]))

    with pytest.raises(DGNError, match="ip2"):
        load_into(module, weights, {"ip2": "classifier"})  # strict: classifier.* has no parameter
    report = load_into(module, weights, {"ip2": "classifier"}, strict=False)
    assert report.unmapped == ["classifier.weight", "classifier.bias"]
    assert report.missing == ["ip2.weight", "ip2.bias"]

    wrong = build_module(d / "lenet.prototxt", input_shape=(1, 1, 32, 32))  # ip1 would take 50*5*5
    before = wrong.conv1.weight.detach().clone()
    with pytest.raises(DGNError, match="'ip1'.*\\(500, 800\\).*\\(500, 1250\\)"):
        load_into(wrong, weights)
    torch.testing.assert_close(wrong.conv1.weight.detach(), before)  # nothing copied on failure


# ---------------------------------------------------------------------------------------------
# Robustness: mutated and truncated real files
# ---------------------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        # half the edits land in the first 3 KB, where the layer structure is
        i = rng.randrange(len(b)) if rng.random() < 0.5 else rng.randrange(min(len(b), 3000))
        op = rng.random()
        if op < 0.5:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.8:
            del b[i : i + rng.randint(1, 16)]
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(b)


@pytest.mark.parametrize(
    "name", ["lenet_mnist/lenet_iter_10000.caffemodel", "cifar10_quick_v1/cifar10_quick_iter_5000.caffemodel"]
)
def test_mutated_and_truncated_caffemodels(fixtures_dir, tmp_path, name):
    rng = random.Random(1234)
    data = (fixtures_dir / "caffe" / name).read_bytes()
    cases = [mutate(data, rng) for _ in range(150)]
    cases += [data[: rng.randrange(len(data))] for _ in range(50)] + [data[:n] for n in range(64)]
    outcomes = {"ok": 0, "error": 0}
    path = tmp_path / "m.caffemodel"
    t0 = time.perf_counter()
    for case in cases:
        path.write_bytes(case)
        start = time.perf_counter()
        try:
            read_caffemodel(path)
            outcomes["ok"] += 1
        except DGNError:
            outcomes["error"] += 1
        assert time.perf_counter() - start < 2.0
    assert outcomes["error"] > 50 and outcomes["ok"] > 0, outcomes  # both paths were exercised
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize(
    "name",
    [
        "lenet_mnist/lenet.prototxt",
        "cifar10_quick_v1/cifar10_quick.prototxt",
        "squeezenet/deploy_v1.1.prototxt",
    ],
)
def test_mutated_prototxts(fixtures_dir, tmp_path, name):
    rng = random.Random(99)
    data = (fixtures_dir / "caffe" / name).read_bytes()
    outcomes = {"ok": 0, "error": 0}
    for k in range(120):
        case = mutate(data, rng) if k < 100 else data[: rng.randrange(len(data))]
        path = tmp_path / "m.prototxt"
        path.write_bytes(case)
        try:
            build_module(read_prototxt(path))
            outcomes["ok"] += 1
        except DGNError:
            outcomes["error"] += 1
    assert outcomes["error"] > 20 and outcomes["ok"] > 0, outcomes
