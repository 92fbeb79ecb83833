import torch
import torch.nn.functional as F

from dgn.layers import forward_to, layer_table
from dgn.nets.caffenet import CaffeNet


def test_shapes_follow_caffe_ceil_mode_pooling():
    rows = {r["name"]: r["shape"] for r in layer_table(CaffeNet(), (3, 227, 227))}
    assert rows["conv1"] == (96, 55, 55)
    assert rows["pool1"] == (96, 27, 27)
    assert rows["conv2"] == (256, 27, 27)
    assert rows["pool2"] == (256, 13, 13)
    assert rows["conv5"] == (256, 13, 13)
    assert rows["pool5"] == (256, 6, 6)
    assert rows["fc6"] == (4096,) and rows["fc8"] == (1000,)


def test_grouped_convolutions_as_in_caffe():
    net = CaffeNet()
    assert net.conv2.weight.shape == (256, 48, 5, 5)
    assert net.conv4.weight.shape == (384, 192, 3, 3)
    assert net.conv5.weight.shape == (256, 192, 3, 3)
    assert sum(p.numel() for p in net.parameters()) == 60_965_224  # bvlc_reference_caffenet


def test_max_pool_rounds_up_like_caffe():
    pool = CaffeNet().pool1
    x = torch.arange(36.0).view(1, 1, 6, 6)
    # Caffe: ceil((6 - 3) / 2) + 1 = 3 outputs per side; the last window is clipped to [4, 6).
    expected = torch.tensor([[14.0, 16.0, 17.0], [26.0, 28.0, 29.0], [32.0, 34.0, 35.0]])
    assert torch.equal(pool(x)[0, 0], expected)


def test_lrn_matches_caffes_formula_by_hand():
    norm = CaffeNet().norm1
    x = torch.randn(1, 7, 2, 3)
    out = norm(x)
    # Caffe ACROSS_CHANNELS: b_c = a_c / (1 + alpha/n * sum_{c' in [c-2, c+2]} a_c'^2) ** beta, n = 5
    for c in range(7):
        window = x[0, max(0, c - 2) : c + 3]
        expected = x[0, c] / (1 + 1e-4 / 5 * (window**2).sum(0)) ** 0.75
        assert torch.allclose(out[0, c], expected, atol=1e-6)


def test_hooked_outputs_are_pre_relu_despite_in_place_relus():
    net = CaffeNet().eval()
    x = torch.randn(1, 3, 227, 227) * 50
    acts = forward_to(net, x, ["conv1", "fc7"], stop_early=False)
    assert (acts["conv1"] < 0).any() and (acts["fc7"] < 0).any()
    direct = F.conv2d(x, net.conv1.weight, net.conv1.bias, stride=4)
    assert torch.allclose(acts["conv1"], direct, atol=1e-4)
