"""Deconvnet, guided backpropagation and gradient saliency against a direct computation of each rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgn.cli import main
from dgn.errors import DGNError
from dgn.inspect.attribution import Deconvnet, GuidedBackprop, RuleReLU, Saliency, modified_copy
from dgn.layers import hooks_left


def two_layer_net() -> nn.Sequential:
    """conv1 (1->2, 2x2) -> in-place ReLU -> 2x2 max pool -> conv2 (2->2, 2x2), hand-set weights."""
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(1, 2, 2))
    net.add_module("relu1", nn.ReLU(inplace=True))
    net.add_module("pool1", nn.MaxPool2d(2))
    net.add_module("conv2", nn.Conv2d(2, 2, 2))
    with torch.no_grad():
        net.conv1.weight.copy_(torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]], [[[-1.0, 0.0], [1.0, -2.0]]]]))
        net.conv1.bias.copy_(torch.tensor([0.0, -1.25]))  # one all-negative pool window
        net.conv2.weight.copy_(torch.tensor([
            [[[1.0, -2.0], [0.5, 3.0]], [[-1.0, 2.0], [1.5, -0.5]]],
            [[[0.0, 1.0], [-1.0, 1.0]], [[2.0, 1.0], [0.0, 1.0]]],
        ]))
        net.conv2.bias.zero_()
    return net.eval()


# a 5x5 input: conv1 gives 4x4 maps, the pool 2x2, conv2 one value per channel
INPUT = torch.tensor([[[[0.0, 1.0, -1.0, 2.0, 0.5],
                        [1.0, -2.0, 0.5, 1.0, -1.0],
                        [2.0, 0.0, -1.0, -0.5, 1.0],
                        [-1.0, 1.5, 0.0, 2.0, -2.0],
                        [0.5, -1.0, 1.0, 0.0, 1.0]]]])


def reference(net: nn.Sequential, x: torch.Tensor, unit: int, rule: str) -> np.ndarray:
    """The rule computed by hand with loops: forward with switches, then the backward pass step by step."""
    w1, b1 = net.conv1.weight.detach().numpy(), net.conv1.bias.detach().numpy()
    w2 = net.conv2.weight.detach().numpy()
    img = x[0, 0].numpy().astype(np.float64)
    pre = np.zeros((2, 4, 4))
    for k in range(2):
        for i in range(4):
            for j in range(4):
                pre[k, i, j] = (w1[k, 0] * img[i : i + 2, j : j + 2]).sum() + b1[k]
    post = np.maximum(pre, 0)
    switches = {}
    for k in range(2):
        for pi in range(2):
            for pj in range(2):
                window = post[k, 2 * pi : 2 * pi + 2, 2 * pj : 2 * pj + 2]
                a, b = divmod(int(np.argmax(window)), 2)  # first maximum, as Caffe and torch pick
                switches[k, pi, pj] = (2 * pi + a, 2 * pj + b)
    # conv2's output is 1x1: the signal on the pooled map is the filter itself (transposed filter)
    signal_pooled = w2[unit]
    signal_post = np.zeros((2, 4, 4))
    for (k, pi, pj), (i, j) in switches.items():  # unpooling: back to the recorded switch
        signal_post[k, i, j] += signal_pooled[k, pi, pj]
    if rule == "saliency":
        signal_pre = signal_post * (pre > 0)
    elif rule == "deconvnet":
        signal_pre = np.maximum(signal_post, 0)
    else:  # guided
        signal_pre = np.maximum(signal_post, 0) * (pre > 0)
    out = np.zeros((5, 5))
    for k in range(2):  # transposed conv1 filters
        for i in range(4):
            for j in range(4):
                out[i : i + 2, j : j + 2] += w1[k, 0] * signal_pre[k, i, j]
    return out


@pytest.mark.parametrize("unit", [0, 1])
def test_each_rule_matches_the_hand_computation(unit, one_thread):
    net = two_layer_net()
    results = {
        "saliency": Saliency(net).attribute(INPUT, f"conv2:{unit}@0,0"),
        "deconvnet": Deconvnet(net).attribute(INPUT, f"conv2:{unit}@0,0"),
        "guided": GuidedBackprop(net).attribute(INPUT, f"conv2:{unit}@0,0"),
    }
    for rule, got in results.items():
        assert got.shape == INPUT.shape
        np.testing.assert_allclose(got[0, 0].numpy(), reference(net, INPUT, unit, rule), atol=1e-5, err_msg=rule)
    # the example is built so the three rules really differ
    assert not torch.allclose(results["saliency"], results["deconvnet"])
    assert not torch.allclose(results["deconvnet"], results["guided"])


def test_saliency_is_the_autograd_gradient_and_abs_option(one_thread):
    net = two_layer_net()
    x = INPUT.clone().requires_grad_(True)
    net(x)[0, 1, 0, 0].backward()
    np.testing.assert_allclose(Saliency(net).attribute(INPUT, "conv2:1@0,0").numpy(), x.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(Saliency(net, abs=True).attribute(INPUT, "conv2:1").numpy(), x.grad.abs().numpy(),
                               atol=1e-6)


def test_copy_leaves_the_original_untouched_and_shares_weights(one_thread):
    net = two_layer_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method = GuidedBackprop(net)
    method.attribute(INPUT, "conv2:0")
    assert isinstance(net.relu1, nn.ReLU) and net.relu1.inplace  # the original keeps its in-place ReLU
    assert isinstance(method.network.relu1, RuleReLU)
    assert method.network.conv1.weight is net.conv1.weight  # no second copy of the weights
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert hooks_left(net) == 0 and hooks_left(method.network) == 0
    # the original still computes the plain forward pass
    x = INPUT.clone()
    assert torch.allclose(net(x), two_layer_net()(INPUT.clone()))


def test_functional_relu_models_are_refused_for_the_relu_rules():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 2)

        def forward(self, x):
            return F.relu(self.conv(x))

    with pytest.raises(DGNError, match="F.relu"):
        Deconvnet(Functional())
    with pytest.raises(DGNError, match="no nn.ReLU"):
        modified_copy(Functional(), "guided")
    assert Saliency(Functional()).attribute(INPUT, "conv:0@1,1").shape == INPUT.shape


def test_bad_targets_name_the_problem():
    method = Deconvnet(two_layer_net())
    with pytest.raises(DGNError, match="unknown layer"):
        method.attribute(INPUT, "conv9:0")
    with pytest.raises(DGNError, match="valid units are 0..1"):
        method.attribute(INPUT, "conv2:5")
    with pytest.raises(DGNError, match="malformed target"):
        method.attribute(INPUT, "conv2")


def test_torchvision_resnet_with_inplace_relus(one_thread):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    projection = GuidedBackprop(model).attribute(x, "layer2.0.conv1:3")
    assert projection.shape == x.shape and projection.abs().sum() > 0
    assert isinstance(model.relu, nn.ReLU) and model.relu.inplace
    # the unit without a position is its strongest one, per image
    deconv = Deconvnet(model).attribute(x, "fc:2")
    assert deconv.shape == x.shape


def test_deconvnet_on_cifar_world_is_local_for_a_conv_unit(one_thread):
    from dgn.models import load_classifier

    classifier = load_classifier("cifar-caffenet")
    x = torch.randn(1, 3, 32, 32) * 60
    projection = Deconvnet(classifier.module).attribute(x, "conv2:5@4,4")
    support = projection[0].abs().sum(0) > 0
    rows, cols = torch.nonzero(support, as_tuple=True)
    # conv2 at (4, 4) of its 16x16 map sees only a patch of the 32x32 input around (8, 8)
    assert support.any() and rows.min() >= 0 and rows.max() < 20 and cols.max() < 20


def test_cli_writes_each_method(tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(image)
    for method in ("deconvnet", "guided", "saliency"):
        out = tmp_path / method
        assert main(["inspect", "attribution", "--image", str(image), "--target", "fc8:3", "--method", method,
                     "--out", str(out)]) == 0
        written = Image.open(out / "attribution.png")
        assert written.size[0] > written.size[1] > 100
    assert "wrote" in capsys.readouterr().out
    assert main(["inspect", "attribution", "--image", str(tmp_path / "nope.png"), "--target", "fc8:3",
                 "--out", str(tmp_path / "x")]) == 2
    assert "image file not found" in capsys.readouterr().err
    assert main(["inspect", "attribution", "--image", str(image), "--target", "fc8:10", "--out", str(tmp_path)]) == 2
    assert "valid units are 0..9" in capsys.readouterr().err


def test_deconvnet_passes_lrn_unchanged_on_caffenet(one_thread):
    from dgn.inspect.attribution import PassBackward
    from dgn.models import load_classifier

    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    PassBackward(nn.LocalResponseNorm(2, alpha=10.0))(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # the deconvnet has no inverse of contrast normalisation
    caffenet = load_classifier("caffenet", random_weights=True).module
    deconv = Deconvnet(caffenet)
    assert isinstance(deconv.network.norm1, PassBackward) and isinstance(caffenet.norm1, nn.LocalResponseNorm)
    assert isinstance(GuidedBackprop(caffenet).network.norm1, nn.LocalResponseNorm)  # guided keeps the gradient
    projection = deconv.attribute(torch.randn(1, 3, 227, 227) * 50, "conv1:3@20,20")
    support = torch.nonzero(projection[0].abs().sum(0))
    # conv1 (11x11, stride 4) at (20, 20) reads input rows and columns 80..90
    assert support.min() >= 80 and support.max() <= 90
