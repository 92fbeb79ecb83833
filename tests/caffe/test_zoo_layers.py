"""dgn.caffe: the model-zoo layers (BatchNorm, Scale, Bias, PReLU, ELU, AbsVal, BNLL, Exp, Log, Threshold,
Crop, Slice, Tile, Reduction, ArgMax, dilated and grouped (de)convolution) on small hand-made nets whose
weights are written as binary caffemodels; every expected output comes from the layer's forward equation
in numpy (or torch.nn.functional), not from the module under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgn.caffe import SUPPORTED_LAYER_TYPES, build_module, read_caffemodel, read_prototxt
from dgn.errors import DGNError
from tests.test_caffe import f32, ld, packed_f32, varint, vi

# ---------------------------------------------------------------------------------------------
# Writing nets: prototxt text, and caffemodels with the hand-written protobuf encoder of test_caffe
# ---------------------------------------------------------------------------------------------


def blob(a) -> bytes:
    """A BlobProto: BlobShape (no dims for a 0-D blob, as Caffe writes a shared PReLU slope) + packed data."""
    a = np.asarray(a, np.float32)
    dims = ld(1, b"".join(varint(d) for d in a.shape)) if a.ndim else b""
    return ld(7, dims) + packed_f32(5, a.ravel().tolist())


def layer(name: str, kind: str, bottoms=(), tops=(), blobs=(), params: bytes = b"") -> bytes:
    body = ld(1, name) + ld(2, kind) + b"".join(ld(3, b) for b in bottoms) + b"".join(ld(4, t) for t in tops)
    return ld(100, body + b"".join(ld(7, blob(a)) for a in blobs) + params)


def files(tmp_path: Path, text: str, *layers: bytes) -> tuple[Path, Path]:
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    proto.write_text(text)
    model.write_bytes(ld(1, "zoo") + b"".join(layers))
    return proto, model


def run(tmp_path: Path, text: str, *layers: bytes, inputs: dict[str, np.ndarray], phase="TEST", strict=True):
    """Build the net with its weights, in float64, and return the module and every blob as numpy."""
    proto, model = files(tmp_path, text, *layers)
    m = build_module(proto, model if layers else None, phase=phase, strict=strict).double()
    with torch.no_grad():
        blobs = m(return_all=True, **{k: torch.from_numpy(v) for k, v in inputs.items()})
    return m, {k: v.numpy() for k, v in blobs.items()}


def input_layer(**shapes: tuple[int, ...]) -> str:
    tops = " ".join(f'top: "{t}"' for t in shapes)
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in s) + " }" for s in shapes.values())
    return f'layer {{ name: "in" type: "Input" {tops} input_param {{ {dims} }} }}\n'


rng = np.random.default_rng(16)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# BatchNorm, Scale, Bias
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s, eps", [(1.0, None), (0.5, 1e-3), (999.98236, 1e-5), (0.0, 1e-2)])
def test_batchnorm_divides_by_the_scale_factor_blob(tmp_path, s, eps):
    x = randn(2, 3, 4, 5) * 3 + 1
    mean_sum, var_sum = randn(3) * (s or 1), (np.abs(randn(3)) + 0.5) * (s or 1)  # s == 0: blobs ignored
    param = "" if eps is None else f"batch_norm_param {{ eps: {eps} }}"
    text = input_layer(x=x.shape) + f'layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "y" {param} }}'
    _, out = run(tmp_path, text, layer("bn", "BatchNorm", ["x"], ["y"], [mean_sum, var_sum, [s]]), inputs={"x": x})
    f = 0.0 if s == 0 else 1.0 / np.float32(s)  # Caffe: s == 0 means statistics 0
    mean, var = np.float32(mean_sum) * f, np.float32(var_sum) * f
    want = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + (1e-5 if eps is None else eps))
    np.testing.assert_allclose(out["y"], want, rtol=1e-6, atol=1e-6)
    if s == 0:
        np.testing.assert_allclose(out["y"], x / np.sqrt(eps), rtol=1e-12)


def test_batchnorm_batch_statistics_and_caffe_moving_average(tmp_path):
    x = randn(4, 2, 3, 3) * 2 + 5
    text = input_layer(x=x.shape) + (
        'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
        "batch_norm_param { use_global_stats: false moving_average_fraction: 0.9 } }"
    )
    blobs = [np.full(2, 3.0), np.full(2, 4.0), [2.0]]
    m, out = run(tmp_path, text, layer("bn", "BatchNorm", ["x"], ["y"], blobs), inputs={"x": x}, phase="TRAIN")
    mean = x.mean(axis=(0, 2, 3))
    var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))  # biased, as Caffe normalises with
    np.testing.assert_allclose(out["y"], (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), rtol=1e-9)
    count = 4 * 3 * 3
    np.testing.assert_allclose(m.bn.scale_factor.numpy(), [0.9 * 2 + 1])
    np.testing.assert_allclose(m.bn.moving_mean.numpy(), mean + 0.9 * 3, rtol=1e-9)
    np.testing.assert_allclose(m.bn.moving_var.numpy(), var * count / (count - 1) + 0.9 * 4, rtol=1e-9)


def test_batchnorm_uses_global_stats_in_a_deploy_net_and_honours_the_flag(tmp_path):
    x = randn(3, 2, 2, 2)
    blobs = [[1.0, -2.0], [4.0, 9.0], [1.0]]
    base = input_layer(x=x.shape) + 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" %s }'
    want = (x - np.array([1.0, -2.0])[:, None, None]) / np.sqrt(np.array([4.0, 9.0])[:, None, None] + 1e-5)
    for flag in ("", "batch_norm_param { use_global_stats: true }"):
        for phase in ("TEST", "TRAIN") if flag else ("TEST",):
            _, out = run(tmp_path, base % flag, layer("bn", "BatchNorm", ["x"], ["y"], blobs), inputs={"x": x},
                         phase=phase)
            np.testing.assert_allclose(out["y"], want, rtol=1e-6)


def test_per_channel_blobs_may_carry_unit_axes_but_not_other_shapes(tmp_path):
    x = randn(1, 3, 2, 2)
    text = input_layer(x=x.shape) + """
    layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }
    layer { name: "sc" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }"""
    mean, var, gamma, beta = randn(3), np.abs(randn(3)) + 1, randn(3), randn(3)  # var: float32 within 1e-7
    four_d = [a.reshape(1, 3, 1, 1) for a in (mean, var, gamma, beta)]
    _, out = run(tmp_path, text, layer("bn", "BatchNorm", ["x"], ["x"], [*four_d[:2], np.ones((1, 1, 1, 1))]),
                 layer("sc", "Scale", ["x"], ["x"], four_d[2:]), inputs={"x": x})
    c = (slice(None), None, None)
    np.testing.assert_allclose(out["x"], (x - mean[c]) / np.sqrt(var[c] + 1e-5) * gamma[c] + beta[c], rtol=1e-6)
    proto, model = files(tmp_path, text, layer("bn", "BatchNorm", ["x"], ["x"], [randn(4), randn(4), [1.0]]))
    with pytest.raises(DGNError, match=r"'bn' blob 0 has shape \(4,\)"):
        build_module(proto, model, strict=False)


def test_scale_and_bias_one_and_two_bottoms(tmp_path):
    x, s, t = randn(2, 3, 4, 5), randn(2, 3), randn(4, 5)
    w1, b1, b2, b3 = randn(3, 4), randn(3, 4), randn(2, 3), randn(3)
    text = input_layer(x=x.shape, s=s.shape, t=t.shape) + """
    layer { name: "sc1" type: "Scale" bottom: "x" top: "a" scale_param { axis: 1 num_axes: 2 bias_term: true } }
    layer { name: "sc2" type: "Scale" bottom: "a" bottom: "s" top: "b" scale_param { axis: 0 bias_term: true } }
    layer { name: "bi1" type: "Bias" bottom: "b" top: "c" }
    layer { name: "bi2" type: "Bias" bottom: "c" bottom: "t" top: "d" bias_param { axis: -2 } }
    layer { name: "sc3" type: "Scale" bottom: "d" top: "e" scale_param { num_axes: 0 } }
    layer { name: "sc4" type: "Scale" bottom: "e" top: "f" scale_param { axis: 2 num_axes: -1 } }
    """
    weights = [
        layer("sc1", "Scale", ["x"], ["a"], [w1, b1]),
        layer("sc2", "Scale", ["a", "s"], ["b"], [b2]),  # two bottoms: the only blob is the bias
        layer("bi1", "Bias", ["b"], ["c"], [b3]),
        layer("sc3", "Scale", ["d"], ["e"], [2.5 * np.ones(())]),  # a 0-D scale multiplies everything
    ]
    m, out = run(tmp_path, text, *weights, inputs={"x": x, "s": s, "t": t}, strict=False)
    assert m.load_report.missing == ["sc4.weight"]
    a = x * w1[None, :, :, None] + b1[None, :, :, None]
    b = a * s[:, :, None, None] + b2[:, :, None, None]
    c = b + b3[None, :, None, None]
    d = c + t[None, None]
    np.testing.assert_allclose(out["a"], a, rtol=1e-12)
    np.testing.assert_allclose(out["b"], b, rtol=1e-12)
    np.testing.assert_allclose(out["d"], d, rtol=1e-12)
    np.testing.assert_allclose(out["e"], 2.5 * d, rtol=1e-12)
    np.testing.assert_allclose(out["f"], 2.5 * d, rtol=1e-12)  # sc4 got no blob: its scale stays 1
    assert tuple(m.sc4.weight.shape) == (4, 5) and m.sc2.weight is None and m.bi2.bias is None


def test_scale_without_weights_uses_fillers_and_strict_loading_reports_missing(tmp_path):
    text = input_layer(x=(1, 2, 3)) + """
    layer { name: "sc" type: "Scale" bottom: "x" top: "y"
            scale_param { bias_term: true filler { value: 3 } bias_filler { type: "constant" value: -1 } } }
    layer { name: "bn" type: "BatchNorm" bottom: "y" top: "z" }"""
    proto, model = files(tmp_path, text, layer("bn", "BatchNorm", ["y"], ["z"], [[0.0, 0.0], [1.0, 1.0], [1.0]]))
    m = build_module(proto)
    np.testing.assert_array_equal(m.sc.weight.detach().numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(m.sc.bias.detach().numpy(), [-1.0, -1.0])
    with pytest.raises(DGNError, match=r"sc\.weight.*sc\.bias"):
        build_module(proto, model)
    report = build_module(proto, model, strict=False).load_report
    assert report.loaded == ["bn.moving_mean", "bn.moving_var", "bn.scale_factor"]
    assert report.missing == ["sc.weight", "sc.bias"]


# ---------------------------------------------------------------------------------------------
# PReLU and the element-wise layers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared, slope_shape", [(False, (3,)), (True, ()), (True, (1,))])
def test_prelu_per_channel_and_shared(tmp_path, shared, slope_shape):
    x = randn(2, 3, 4, 4)
    slopes = randn(*slope_shape) if slope_shape else np.float64(-0.25)
    param = "prelu_param { channel_shared: true }" if shared else ""
    text = input_layer(x=x.shape) + f'layer {{ name: "pr" type: "PReLU" bottom: "x" top: "y" {param} }}'
    _, out = run(tmp_path, text, layer("pr", "PReLU", ["x"], ["y"], [slopes]), inputs={"x": x})
    a = np.broadcast_to(np.asarray(slopes).reshape(-1), (3,))[None, :, None, None]
    np.testing.assert_allclose(out["y"], np.maximum(x, 0) + a * np.minimum(x, 0), rtol=1e-12)


def test_prelu_default_slope_is_a_quarter(tmp_path):
    proto, _ = files(tmp_path, input_layer(x=(1, 2, 3)) + 'layer { name: "p" type: "PReLU" bottom: "x" top: "y" }')
    np.testing.assert_array_equal(build_module(proto).p.weight.detach().numpy(), [0.25, 0.25])


def test_elementwise_layers_follow_their_equations(tmp_path):
    x = randn(2, 3, 4) * 3
    x[1, 0, :2] = [0.25, 0.0]  # at the thresholds: 0
    pos, big = np.abs(x) + 0.1, x * 1000  # log(1 + exp(3000)) overflows unless computed with care
    text = input_layer(x=x.shape, p=pos.shape, b=big.shape) + """
    layer { name: "elu" type: "ELU" bottom: "x" top: "elu" elu_param { alpha: 0.5 } }
    layer { name: "elu1" type: "ELU" bottom: "x" top: "elu1" }
    layer { name: "abs" type: "AbsVal" bottom: "x" top: "abs" }
    layer { name: "bnll" type: "BNLL" bottom: "x" top: "bnll" }
    layer { name: "bnll_big" type: "BNLL" bottom: "b" top: "bnll_big" }
    layer { name: "exp" type: "Exp" bottom: "x" top: "exp" }
    layer { name: "exp2" type: "Exp" bottom: "x" top: "exp2" exp_param { base: 2 scale: 0.5 shift: 1 } }
    layer { name: "log" type: "Log" bottom: "p" top: "log" }
    layer { name: "log10" type: "Log" bottom: "p" top: "log10" log_param { base: 10 scale: 2 shift: 3 } }
    layer { name: "th" type: "Threshold" bottom: "x" top: "th" threshold_param { threshold: 0.25 } }
    layer { name: "th0" type: "Threshold" bottom: "x" top: "th0" }
    """
    _, out = run(tmp_path, text, inputs={"x": x, "p": pos, "b": big})
    np.testing.assert_allclose(out["elu"], np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), rtol=1e-12)
    np.testing.assert_allclose(out["elu1"], np.where(x > 0, x, np.exp(x) - 1), rtol=1e-12)
    np.testing.assert_array_equal(out["abs"], np.abs(x))
    np.testing.assert_allclose(out["bnll"], np.logaddexp(0, x), rtol=1e-12)
    np.testing.assert_allclose(out["bnll_big"], np.logaddexp(0, big), rtol=1e-12)
    assert np.isfinite(out["bnll_big"]).all() and out["bnll_big"].max() > 1000
    np.testing.assert_allclose(out["exp"], np.e**x, rtol=1e-12)
    np.testing.assert_allclose(out["exp2"], 2.0 ** (1 + 0.5 * x), rtol=1e-12)
    np.testing.assert_allclose(out["log"], np.log(pos), rtol=1e-12)
    np.testing.assert_allclose(out["log10"], np.log10(3 + 2 * pos), rtol=1e-12)
    np.testing.assert_array_equal(out["th"], (x > 0.25).astype(float))
    np.testing.assert_array_equal(out["th0"], (x > 0).astype(float))


# ---------------------------------------------------------------------------------------------
# Crop, Slice, Tile, Reduction, ArgMax
# ---------------------------------------------------------------------------------------------


def test_crop_to_the_second_bottom(tmp_path):
    x, ref, ref4 = randn(2, 6, 5, 7), randn(1, 1, 3, 4), randn(1, 4, 3, 4)
    text = input_layer(x=x.shape, r=ref.shape, r4=ref4.shape) + """
    layer { name: "c0" type: "Crop" bottom: "x" bottom: "r" top: "c0" }
    layer { name: "c1" type: "Crop" bottom: "x" bottom: "r" top: "c1" crop_param { offset: 2 } }
    layer { name: "c2" type: "Crop" bottom: "x" bottom: "r" top: "c2" crop_param { axis: -2 offset: 1 offset: 3 } }
    layer { name: "c3" type: "Crop" bottom: "x" bottom: "r4" top: "c3" crop_param { axis: 1 offset: 1 } }
    """
    m, out = run(tmp_path, text, inputs={"x": x, "r": ref, "r4": ref4})
    np.testing.assert_array_equal(out["c0"], x[:, :, :3, :4])
    np.testing.assert_array_equal(out["c1"], x[:, :, 2:5, 2:6])
    np.testing.assert_array_equal(out["c2"], x[:, :, 1:4, 3:7])
    np.testing.assert_array_equal(out["c3"], x[:, 1:5, 1:4, 1:5])
    assert m.blob_shapes["c3"] == (2, 4, 3, 4) and m.blob_shapes["c0"] == (2, 6, 3, 4)


def test_slice_into_several_tops(tmp_path):
    x = randn(2, 6, 3)
    text = input_layer(x=x.shape) + """
    layer { name: "s1" type: "Slice" bottom: "x" top: "a" top: "b" top: "c" slice_param { slice_point: [1, 4] } }
    layer { name: "s2" type: "Slice" bottom: "x" top: "n0" top: "n1" slice_param { axis: 0 } }
    layer { name: "s3" type: "Slice" bottom: "x" top: "p" top: "q" slice_param { slice_dim: 2 slice_point: 2 } }
    layer { name: "s4" type: "Slice" bottom: "x" top: "t0" top: "t1" top: "t2" slice_param { axis: -1 } }
    """
    m, out = run(tmp_path, text, inputs={"x": x})
    for name, want in [("a", x[:, :1]), ("b", x[:, 1:4]), ("c", x[:, 4:]), ("n0", x[:1]), ("n1", x[1:]),
                       ("p", x[:, :, :2]), ("q", x[:, :, 2:]), ("t0", x[..., :1]), ("t2", x[..., 2:])]:
        np.testing.assert_array_equal(out[name], want, err_msg=name)
        assert m.blob_shapes[name] == want.shape


def test_tile_repeats_the_blob_from_axis_on(tmp_path):
    x = randn(2, 3, 2)
    text = input_layer(x=x.shape) + """
    layer { name: "t1" type: "Tile" bottom: "x" top: "t1" tile_param { tiles: 3 } }
    layer { name: "t2" type: "Tile" bottom: "x" top: "t2" tile_param { axis: -1 tiles: 2 } }"""
    m, out = run(tmp_path, text, inputs={"x": x})
    # Caffe: for each of the outer (axes before axis) positions, its inner block is copied `tiles` times
    inner = x.reshape(2, 6)
    np.testing.assert_array_equal(out["t1"].reshape(2, 18), np.concatenate([inner] * 3, axis=1))
    pairs = x.reshape(6, 2)
    np.testing.assert_array_equal(out["t2"].reshape(6, 4), np.concatenate([pairs, pairs], axis=1))
    assert m.blob_shapes["t1"] == (2, 9, 2) and m.blob_shapes["t2"] == (2, 3, 4)


def test_reduction_operations_axes_and_coeff(tmp_path):
    x = randn(2, 3, 4)
    text = input_layer(x=x.shape) + """
    layer { name: "sum" type: "Reduction" bottom: "x" top: "sum" }
    layer { name: "asum" type: "Reduction" bottom: "x" top: "asum" reduction_param { operation: ASUM axis: 1 } }
    layer { name: "sumsq" type: "Reduction" bottom: "x" top: "sumsq"
            reduction_param { operation: SUMSQ axis: -1 coeff: 0.5 } }
    layer { name: "mean" type: "Reduction" bottom: "x" top: "mean" reduction_param { operation: MEAN axis: 1 coeff: -2 } }
    """
    m, out = run(tmp_path, text, inputs={"x": x})
    assert out["sum"].shape == () and m.blob_shapes["sum"] == ()
    np.testing.assert_allclose(out["sum"], x.sum(), rtol=1e-12)
    np.testing.assert_allclose(out["asum"], np.abs(x).reshape(2, 12).sum(1), rtol=1e-12)
    np.testing.assert_allclose(out["sumsq"], 0.5 * (x**2).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(out["mean"], -2 * x.reshape(2, 12).mean(1), rtol=1e-12)
    assert m.blob_shapes["sumsq"] == (2, 3) and m.blob_shapes["mean"] == (2,)


def caffe_top_k(values: np.ndarray, k: int) -> list[tuple[float, int]]:
    """Caffe's partial sort of (value, index) pairs with std::greater: larger values, then larger indices, first."""
    return sorted(((float(v), j) for j, v in enumerate(values)), reverse=True)[:k]


def test_argmax_with_and_without_axis(tmp_path):
    x = np.round(randn(2, 3, 2, 2), 0)  # rounding makes ties
    x[0, :, 0, 0] = 7.0  # a three-way tie along the channels
    text = input_layer(x=x.shape) + """
    layer { name: "a1" type: "ArgMax" bottom: "x" top: "a1" }
    layer { name: "a2" type: "ArgMax" bottom: "x" top: "a2" argmax_param { top_k: 3 out_max_val: true } }
    layer { name: "a3" type: "ArgMax" bottom: "x" top: "a3" argmax_param { axis: 1 top_k: 2 } }
    layer { name: "a4" type: "ArgMax" bottom: "x" top: "a4" argmax_param { axis: 1 out_max_val: true } }
    """
    m, out = run(tmp_path, text, inputs={"x": x})
    assert m.blob_shapes["a1"] == (2, 1, 1, 1) and m.blob_shapes["a2"] == (2, 2, 3, 1)
    assert m.blob_shapes["a3"] == (2, 2, 2, 2) and m.blob_shapes["a4"] == (2, 1, 2, 2)
    for n in range(2):
        flat = caffe_top_k(x[n].ravel(), 3)
        assert out["a1"][n].ravel().tolist() == [flat[0][1]]
        assert out["a2"][n, 0, :, 0].tolist() == [j for _, j in flat]
        assert out["a2"][n, 1, :, 0].tolist() == [v for v, _ in flat]
        for i in range(2):
            for j in range(2):
                top = caffe_top_k(x[n, :, i, j], 2)
                assert out["a3"][n, :, i, j].tolist() == [k for _, k in top]
                assert out["a4"][n, 0, i, j] == top[0][0]
    assert out["a3"][0, :, 0, 0].tolist() == [2.0, 1.0]  # the tie goes to the larger index


# ---------------------------------------------------------------------------------------------
# Dilated and grouped (de)convolution
# ---------------------------------------------------------------------------------------------


def test_dilated_grouped_convolution_and_deconvolution_then_crop(tmp_path):
    """FCN-style: a dilated, grouped convolution, a grouped, dilated Deconvolution, and a Crop back to the input."""
    x, wc = randn(2, 4, 9, 8), randn(6, 2, 3, 3)
    wd, bd = randn(6, 2, 3, 3), randn(4)  # Caffe deconv weight: (C_in, C_out / group, kh, kw)
    text = input_layer(x=x.shape) + """
    layer { name: "c" type: "Convolution" bottom: "x" top: "c"
      convolution_param { num_output: 6 group: 2 dilation: 3 kernel_size: 3 stride: 2 pad: 2 bias_term: false } }
    layer { name: "up" type: "Deconvolution" bottom: "c" top: "up"
      convolution_param { num_output: 4 group: 2 dilation: 2 kernel_size: 3 stride: 3 pad: 1 } }
    layer { name: "crop" type: "Crop" bottom: "up" bottom: "x" top: "y" crop_param { offset: 1 } }"""
    m, out = run(tmp_path, text, layer("c", "Convolution", ["x"], ["c"], [wc]),
                 layer("up", "Deconvolution", ["c"], ["up"], [wd, bd]), inputs={"x": x})
    # Caffe: conv out = (in + 2p - (d (k - 1) + 1)) / s + 1; deconv out = s (in - 1) + d (k - 1) + 1 - 2p
    assert m.blob_shapes["c"] == (2, 6, (9 + 4 - 7) // 2 + 1, (8 + 4 - 7) // 2 + 1) == (2, 6, 4, 3)
    assert m.blob_shapes["up"] == (2, 4, 3 * 3 + 2 * 2 + 1 - 2, 3 * 2 + 2 * 2 + 1 - 2) == (2, 4, 12, 9)
    conv = F.conv2d(torch.from_numpy(x), torch.from_numpy(wc), stride=2, padding=2, dilation=3, groups=2)
    up = F.conv_transpose2d(conv, torch.from_numpy(wd), torch.from_numpy(bd), stride=3, padding=1, groups=2,
                            dilation=2)
    np.testing.assert_allclose(out["c"], conv.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["up"], up.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(out["y"], up.numpy()[:, :, 1:10, 1:9])


# ---------------------------------------------------------------------------------------------
# A ResNet-style net: conv (no bias) -> BatchNorm -> Scale -> ReLU, a bottleneck with a projection shortcut
# ---------------------------------------------------------------------------------------------


def conv_params(num_output: int, kernel: int, pad: int = 0, stride: int = 1) -> bytes:
    body = vi(1, num_output) + vi(2, 0) + vi(3, pad) + vi(4, kernel) + vi(6, stride)  # bias_term: false
    return ld(106, body)


BN_PARAMS = ld(139, vi(1, 1) + f32(3, 1e-5))  # batch_norm_param { use_global_stats: true eps: 1e-5 }
SCALE_PARAMS = ld(142, vi(4, 1))  # scale_param { bias_term: true }

RESNET = """name: "tiny-resnet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "scale_conv1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
%s
layer { name: "res2a" type: "Eltwise" bottom: "res2a_branch1" bottom: "res2a_branch2c" top: "res2a" }
layer { name: "res2a_relu" type: "ReLU" bottom: "res2a" top: "res2a" }
layer { name: "pool5" type: "Pooling" bottom: "res2a" top: "pool5" pooling_param { pool: AVE kernel_size: 4 stride: 1 } }
layer { name: "fc5" type: "InnerProduct" bottom: "pool5" top: "fc5" inner_product_param { num_output: 5 } }
"""
# (branch, bottom, num_output, kernel, pad, relu)
BRANCHES = [("branch1", "pool1", 8, 1, 0, False), ("branch2a", "pool1", 2, 1, 0, True),
            ("branch2b", "res2a_branch2a", 2, 3, 1, True), ("branch2c", "res2a_branch2b", 8, 1, 0, False)]


def resnet_text() -> str:
    blocks = []
    for br, bottom, n, k, p, relu in BRANCHES:
        top = f"res2a_{br}"
        blocks.append(
            f'layer {{ name: "{top}" type: "Convolution" bottom: "{bottom}" top: "{top}"\n'
            f"        convolution_param {{ num_output: {n} kernel_size: {k} pad: {p} bias_term: false }} }}\n"
            f'layer {{ name: "bn2a_{br}" type: "BatchNorm" bottom: "{top}" top: "{top}"\n'
            f"        batch_norm_param {{ use_global_stats: true }} }}\n"
            f'layer {{ name: "scale2a_{br}" type: "Scale" bottom: "{top}" top: "{top}" scale_param {{ bias_term: true }} }}'
            + (f'\nlayer {{ name: "{top}_relu" type: "ReLU" bottom: "{top}" top: "{top}" }}' if relu else "")
        )
    return RESNET % "\n".join(blocks)


def resnet_weights() -> tuple[bytes, dict]:
    """The caffemodel as Caffe writes it (layer parameters included), and the numbers for the reference."""
    w: dict = {}
    parts = [layer("data", "Input", [], ["data"])]

    def conv_bn_scale(name, bn, scale, bottom, top, c_in, n, k, p, s_factor):
        w[name] = randn(n, c_in, k, k) * 0.5
        mean, var = randn(n), np.abs(randn(n)) + 0.2
        w[bn] = (mean, var)
        w[scale] = (randn(n) * 0.5 + 1, randn(n) * 0.1)
        parts.extend([
            layer(name, "Convolution", [bottom], [top], [w[name]], conv_params(n, k, p)),
            layer(bn, "BatchNorm", [top], [top], [mean * s_factor, var * s_factor, [s_factor]], BN_PARAMS),
            layer(scale, "Scale", [top], [top], list(w[scale]), SCALE_PARAMS),
        ])

    conv_bn_scale("conv1", "bn_conv1", "scale_conv1", "data", "conv1", 3, 4, 3, 1, 1.0)
    c_in = {"pool1": 4, "res2a_branch2a": 2, "res2a_branch2b": 2}
    for i, (br, bottom, n, k, p, _) in enumerate(BRANCHES):
        conv_bn_scale(f"res2a_{br}", f"bn2a_{br}", f"scale2a_{br}", bottom, f"res2a_{br}", c_in[bottom], n, k, p,
                      [1.0, 2.0, 0.5, 999.98][i])
    w["fc5"] = (randn(5, 8), randn(5))
    parts.append(layer("fc5", "InnerProduct", ["pool5"], ["fc5"], list(w["fc5"]), ld(117, vi(1, 5))))
    return ld(1, "tiny-resnet") + b"".join(parts), w


def resnet_reference(x: torch.Tensor, w: dict) -> torch.Tensor:
    """The same net written by hand with torch.nn.functional."""

    def t(a) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, np.float32))

    def unit(h, conv, bn, scale, pad, relu):
        h = F.conv2d(h, t(w[conv]), padding=pad)
        h = F.batch_norm(h, t(w[bn][0]), t(w[bn][1]), training=False, eps=1e-5)
        h = h * t(w[scale][0])[:, None, None] + t(w[scale][1])[:, None, None]
        return F.relu(h) if relu else h

    h = F.max_pool2d(unit(x, "conv1", "bn_conv1", "scale_conv1", 1, True), 2, 2)
    short = unit(h, "res2a_branch1", "bn2a_branch1", "scale2a_branch1", 0, False)
    b = unit(h, "res2a_branch2a", "bn2a_branch2a", "scale2a_branch2a", 0, True)
    b = unit(b, "res2a_branch2b", "bn2a_branch2b", "scale2a_branch2b", 1, True)
    b = unit(b, "res2a_branch2c", "bn2a_branch2c", "scale2a_branch2c", 0, False)
    h = F.avg_pool2d(F.relu(short + b), 4, 1)
    return F.linear(h.flatten(1), t(w["fc5"][0]), t(w["fc5"][1]))


def test_resnet_style_net_matches_a_hand_written_torch_net(tmp_path):
    data, w = resnet_weights()
    proto, model = tmp_path / "resnet.prototxt", tmp_path / "resnet.caffemodel"
    proto.write_text(resnet_text())
    model.write_bytes(data)
    m = build_module(proto, model)
    assert m.load_report.missing == [] and m.load_report.unmapped == []
    assert m.blob_shapes["res2a"] == (2, 8, 4, 4) and m.blob_shapes["fc5"] == (2, 5)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        got, want = m(x), resnet_reference(x, w)
    assert (got - want).abs().max() < 1e-5
    # the binary layer parameters were read too
    bn = read_caffemodel(model).layer("bn2a_branch2c")
    assert bn.params["batch_norm_param"] == {"use_global_stats": True, "eps": pytest.approx(1e-5)}
    assert read_caffemodel(model).layer("scale_conv1").params["scale_param"] == {"bias_term": True}


def test_convert_inspect_and_generic_on_the_resnet_style_net(tmp_path, capsys):
    from safetensors.torch import load_file

    from dgn.cli import main

    data, w = resnet_weights()
    proto, model = tmp_path / "resnet.prototxt", tmp_path / "resnet.caffemodel"
    proto.write_text(resnet_text())
    model.write_bytes(data)
    assert main(["convert", "caffe", "--inspect", str(model)]) == 0
    table = capsys.readouterr().out
    for name, kind in [("bn_conv1", "BatchNorm"), ("scale2a_branch2c", "Scale"), ("res2a_branch1", "Convolution"),
                       ("fc5", "InnerProduct")]:
        assert any(name in line and kind in line for line in table.splitlines()), (name, table)
    assert "(4,) (4,) (1,)" in table  # BatchNorm's mean, variance and scale factor blobs
    out = tmp_path / "resnet.safetensors"
    assert main(["convert", "caffe", "--caffemodel", str(model), "--prototxt", str(proto), "--arch", "generic",
                 "--out", str(out)]) == 0
    state = load_file(out)
    np.testing.assert_allclose(state["bn2a_branch2b.moving_mean"].numpy(), w["bn2a_branch2b"][0] * 0.5, rtol=1e-6)
    assert state["bn2a_branch2b.scale_factor"].tolist() == [0.5]
    assert state["scale_conv1.weight"].shape == (4,)


# ---------------------------------------------------------------------------------------------
# Parsing the new parameters, and errors
# ---------------------------------------------------------------------------------------------


def test_zoo_parameters_read_alike_from_text_and_binary(tmp_path):
    text = """
    layer { name: "r" type: "Reduction" reduction_param { operation: MEAN axis: -1 coeff: 0.5 } }
    layer { name: "s" type: "Slice" slice_param { axis: 2 slice_point: 3 slice_point: 5 } }
    layer { name: "c" type: "Crop" crop_param { axis: 1 offset: [4, 2] } }
    layer { name: "a" type: "ArgMax" argmax_param { out_max_val: true top_k: 2 axis: 1 } }
    layer { name: "p" type: "PReLU" prelu_param { channel_shared: true filler { type: "constant" value: 0.25 } } }
    layer { name: "e" type: "Exp" exp_param { base: 2 scale: 3 shift: 4 } }
    layer { name: "l" type: "Log" log_param { base: 10 } }
    layer { name: "t" type: "Tile" tile_param { axis: 1 tiles: 3 } }
    layer { name: "th" type: "Threshold" threshold_param { threshold: 0.5 } }
    layer { name: "elu" type: "ELU" elu_param { alpha: 0.25 } }
    layer { name: "b" type: "Bias" bias_param { axis: 2 num_axes: 1 } }
    layer { name: "bn" type: "BatchNorm" batch_norm_param { use_global_stats: false moving_average_fraction: 0.5 } }
    """
    binary = [
        ("r", "Reduction", ld(136, vi(1, 4) + vi(2, -1) + f32(3, 0.5))),
        ("s", "Slice", ld(126, vi(3, 2) + ld(2, varint(3) + varint(5)))),  # packed slice_point
        ("c", "Crop", ld(144, vi(1, 1) + vi(2, 4) + vi(2, 2))),  # unpacked offsets
        ("a", "ArgMax", ld(103, vi(1, 1) + vi(2, 2) + vi(3, 1))),
        ("p", "PReLU", ld(131, ld(1, ld(1, "constant") + f32(2, 0.25)) + vi(2, 1))),
        ("e", "Exp", ld(111, f32(1, 2) + f32(2, 3) + f32(3, 4))),
        ("l", "Log", ld(134, f32(1, 10))),
        ("t", "Tile", ld(138, vi(1, 1) + vi(2, 3))),
        ("th", "Threshold", ld(128, f32(1, 0.5))),
        ("elu", "ELU", ld(140, f32(1, 0.25))),
        ("b", "Bias", ld(141, vi(1, 2) + vi(2, 1))),
        ("bn", "BatchNorm", ld(139, vi(1, 0) + f32(2, 0.5))),
    ]
    proto, model = files(tmp_path, text, *(layer(n, k, params=p) for n, k, p in binary))
    from_text, from_binary = read_prototxt(proto), read_caffemodel(model)
    for name, _, _ in binary:
        assert from_text.layer(name).params == from_binary.layer(name).params, name
    assert from_text.layer("r").params["reduction_param"] == {"operation": "MEAN", "axis": -1, "coeff": 0.5}
    assert from_binary.layer("s").params["slice_param"] == {"axis": 2, "slice_point": [3, 5]}


def test_v1_layers_with_zoo_parameters(tmp_path):
    # V1 (enum-typed) ABSVAL and THRESHOLD layers, threshold_param = V1 field 25
    v1 = ld(2, ld(4, "abs") + vi(5, 35) + ld(2, "x") + ld(3, "a")) + ld(
        2, ld(4, "th") + vi(5, 31) + ld(2, "a") + ld(3, "t") + ld(25, f32(1, 0.5)))
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(ld(3, "x") + vi(4, 1) + vi(4, 1) + vi(4, 2) + vi(4, 2) + v1)
    net = read_caffemodel(path)
    assert [lay.type for lay in net.layers] == ["AbsVal", "Threshold"]
    x = torch.tensor([[[[-1.0, 0.2], [0.7, -0.6]]]])
    torch.testing.assert_close(build_module(net)(x), torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]]))


@pytest.mark.parametrize(
    "layer_text, match",
    [
        ('type: "Crop" bottom: "x"', "expects 2 bottoms, has 1"),
        ('type: "Scale" bottom: "x" bottom: "x" bottom: "x"', "expects 1 to 2 bottoms, has 3"),
        ('type: "BatchNorm" bottom: "x" top: "extra"', "expects 1 top, has 2"),
        ('type: "Slice" bottom: "x" top: "extra" slice_param { slice_point: 1 slice_point: 2 }', "2 slice points"),
        ('type: "Slice" bottom: "x" top: "extra"', "do not divide"),
        ('type: "Slice" bottom: "x" top: "extra" slice_param { slice_point: 9 }', "increase strictly"),
        ('type: "Crop" bottom: "x" bottom: "x" crop_param { offset: 1 }', "runs past"),
        ('type: "Scale" bottom: "x" scale_param { axis: 2 num_axes: 3 }', "does not fit"),
        ('type: "Scale" bottom: "x" bottom: "x" scale_param { axis: 1 }', "does not match"),
        ('type: "Reduction" bottom: "x" reduction_param { operation: 7 }', "operation 7"),
        ('type: "Reduction" bottom: "x" reduction_param { axis: 4 }', "out of range"),
        ('type: "Exp" bottom: "x" exp_param { base: -2 }', "must be positive"),
        ('type: "Log" bottom: "x" log_param { base: 1 }', "base 1"),
        ('type: "Tile" bottom: "x"', "tiles must be given"),
        ('type: "ArgMax" bottom: "x" argmax_param { axis: 1 top_k: 4 }', "exceeds"),
        ('type: "PReLU" bottom: "v"', "at least 2 axes"),
    ],
)
def test_bad_zoo_layers_raise_one_line_errors(tmp_path, layer_text, match):
    text = input_layer(x=(2, 3, 4, 4), v=(5,)) + f'layer {{ name: "bad" {layer_text} top: "y" }}'
    proto, _ = files(tmp_path, text)
    with pytest.raises(DGNError, match=match) as err:
        build_module(proto)
    assert "'bad'" in str(err.value) and "\n" not in str(err.value)


def test_supported_types_include_the_zoo_layers():
    zoo = {"BatchNorm", "Scale", "Bias", "PReLU", "ELU", "AbsVal", "BNLL", "Exp", "Log", "Threshold", "Crop",
           "Slice", "Tile", "Reduction", "ArgMax", "Deconvolution"}
    assert zoo <= set(SUPPORTED_LAYER_TYPES)
