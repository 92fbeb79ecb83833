import pytest

from dgn.errors import DGNError
from dgn.targets import Target, expand_targets, parse_target, resolve_target
from tests.tiny import tiny_classifier


def test_parse_forms():
    assert parse_target("fc8:945") == Target("fc8", 945)
    assert parse_target("conv5:12@6,6") == Target("conv5", 12, (6, 6))
    assert parse_target("features.10:3@1,2") == Target("features.10", 3, (1, 2))
    assert str(parse_target("conv5:12@6,6")) == "conv5:12@6,6"


@pytest.mark.parametrize("text", ["fc8", "fc8:", ":3", "fc8:a", "conv5:1@6", "conv5:1@6,"])
def test_malformed_targets_show_the_form(text):
    with pytest.raises(DGNError, match="LAYER:UNIT"):
        parse_target(text)


def test_negative_unit_is_refused():
    with pytest.raises(DGNError, match="unit must be >= 0"):
        parse_target("fc8:-1")


def test_conv_target_defaults_to_the_centre():
    # conv2 of the tiny net is 8x8 -> centre (3, 3); CaffeNet's 13x13 conv5 gives (6, 6) the same way.
    assert resolve_target(tiny_classifier(), "conv2:1", (8, 8, 8)).position == (3, 3)
    assert resolve_target(tiny_classifier(), "conv2:1", (8, 13, 13)).position == (6, 6)


def test_out_of_range_errors_state_the_valid_range():
    net = tiny_classifier()
    with pytest.raises(DGNError, match=r"valid units are 0\.\.4"):
        resolve_target(net, "fc8:5", (5,))
    with pytest.raises(DGNError, match=r"valid y 0\.\.7, x 0\.\.7"):
        resolve_target(net, "conv2:1@8,0", (8, 8, 8))
    with pytest.raises(DGNError, match="no spatial dimensions"):
        resolve_target(net, "fc8:1@0,0", (5,))


def test_alias_is_resolved_to_the_canonical_name():
    import torchvision

    net = torchvision.models.alexnet(weights=None)
    assert resolve_target(net, "fc8:3", (1000,)).layer == "classifier.6"


def test_ranges_expand():
    assert expand_targets("fc8:3-5") == ["fc8:3", "fc8:4", "fc8:5"]
    assert expand_targets("conv5:1-2@6,6") == ["conv5:1@6,6", "conv5:2@6,6"]
    assert expand_targets("fc8:7") == ["fc8:7"]
    with pytest.raises(DGNError, match="empty unit range"):
        expand_targets("fc8:5-3")


def test_channel_layer_and_direction_forms_round_trip():
    assert parse_target("conv5:12@mean") == Target("conv5", 12, None, "unit", True)
    assert parse_target("conv5:layer") == Target("conv5", kind="layer")
    assert parse_target("fc7:dir=probe.npy") == Target("fc7", -1, None, "direction", False, "probe.npy")
    assert parse_target("conv5:dir=v.txt@2,3").position == (2, 3)
    assert parse_target("fc8:prob=945") == Target("fc8", 945, None, "prob")
    for text in ("conv5:12@mean", "conv5:layer", "fc7:dir=probe.npy", "conv5:dir=v.txt@mean", "conv5:dir=v.txt@2,3",
                 "fc8:prob=945", "conv5:prob=3@mean", "conv5:prob=3@1,2"):
        assert str(parse_target(text)) == text
    assert parse_target("conv5:12@mean").slug == "conv5_0012_mean"
    assert parse_target("conv5:layer").slug == "conv5_layer"
    assert parse_target("conv5:dir=a/probe.npy@mean").slug == "conv5_dir-probe_mean"
    for bad, message in (("conv5:layer@1,1", "takes no position"), ("conv5:dir=", "names no direction file"),
                         ("conv5:1@centre", "malformed position"), ("fc8:prob=x", "write fc8:prob=UNIT")):
        with pytest.raises(DGNError, match=message):
            parse_target(bad)


def test_new_forms_resolve_against_the_layer(tmp_path):
    net = tiny_classifier()
    assert resolve_target(net, "conv2:1@mean", (8, 8, 8)).position is None
    assert resolve_target(net, "fc6:1@mean", (32,)) == Target("fc6", 1)  # one place: a neuron
    assert resolve_target(net, "conv2:layer", (8, 8, 8)).kind == "layer"
    (tmp_path / "v.txt").write_text(" ".join(["1"] * 8))
    assert resolve_target(net, f"conv2:dir={tmp_path}/v.txt", (8, 8, 8)).position == (3, 3)
    with pytest.raises(DGNError, match="has 8 values but layer 'fc6' has 32 channels"):
        resolve_target(net, f"fc6:dir={tmp_path}/v.txt", (32,))
    with pytest.raises(DGNError, match="does not exist"):
        resolve_target(net, "fc6:dir=/nonexistent.npy", (32,))
