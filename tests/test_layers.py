import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dgn.errors import DGNError
from dgn.layers import capture, forward_to, hooks_left, resolve_layer
from tests.tiny import tiny_classifier


def test_torchvision_alexnet_aliases():
    net = torchvision.models.alexnet(weights=None)
    assert resolve_layer(net, "conv5") == "features.10"
    assert resolve_layer(net, "fc8") == "classifier.6"
    assert resolve_layer(net, "features.3") == "features.3"


def test_unknown_layer_names_the_closest():
    with pytest.raises(DGNError, match="closest: .*fc6"):
        resolve_layer(tiny_classifier(), "fc7")


def test_in_place_relu_does_not_change_the_captured_pre_relu_value():
    net = tiny_classifier().eval()
    acts = forward_to(net, torch.randn(2, 3, 36, 36) * 50, ["conv1", "fc6"], stop_early=False)
    assert (acts["conv1"] < 0).any() and (acts["fc6"] < 0).any()


def test_functional_in_place_relu_is_also_harmless():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return F.relu(self.lin(x), inplace=True)

    net = Functional()
    x = torch.randn(8, 4)
    assert torch.allclose(forward_to(net, x, ["lin"])["lin"], net.lin(x))


def test_forward_stops_after_the_deepest_target():
    net = tiny_classifier()
    calls = []
    net.fc8.register_forward_hook(lambda *a: calls.append("fc8"))
    net.fc6.register_forward_hook(lambda *a: calls.append("fc6"))
    forward_to(net, torch.randn(1, 3, 36, 36), ["conv2"])
    assert calls == []
    forward_to(net, torch.randn(1, 3, 36, 36), ["fc8"])
    assert calls == ["fc6", "fc8"]


def test_no_hooks_left_even_after_an_error():
    net = tiny_classifier()
    before = hooks_left(net)
    forward_to(net, torch.randn(1, 3, 36, 36), ["conv1", "fc8"])
    with pytest.raises(RuntimeError), capture(net, ["conv2"]):
        net(torch.randn(1, 5, 36, 36))  # wrong channel count
    assert hooks_left(net) == before


def test_layer_that_never_runs_is_reported():
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(DGNError, match="did not run"):
        forward_to(WithSpare(), torch.randn(1, 2), ["spare"])
