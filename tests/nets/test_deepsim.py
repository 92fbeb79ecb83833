import pytest
import torch

from dgn.nets.deepsim import DeePSimGenerator

RELEASED_FC6_KEYS = [
    f"{layer}.{kind}"
    for layer in ["defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1",
                  "deconv3", "conv3_1", "deconv2", "deconv1", "deconv0"]
    for kind in ("weight", "bias")
]


def test_fc6_generator_has_the_released_parameter_count():
    gen = DeePSimGenerator("fc6")
    assert sum(p.numel() for p in gen.parameters()) == 56_097_891


def test_fc6_state_dict_keys_and_shapes_match_the_released_conversion():
    state = DeePSimGenerator("fc6").state_dict()
    assert list(state) == RELEASED_FC6_KEYS
    assert state["defc7.weight"].shape == (4096, 4096)
    assert state["conv5_1.weight"].shape == (256, 512, 3, 3)  # Caffe deconv layout (C_in, C_out, k, k)
    assert state["deconv0.weight"].shape == (32, 3, 4, 4)


@pytest.mark.parametrize("variant,code_shape", [("fc6", (4096,)), ("fc7", (4096,)), ("fc8", (1000,)), ("pool5", (256, 6, 6))])
def test_each_variant_maps_codes_to_256px_bgr_images(variant, code_shape):
    gen = DeePSimGenerator(variant).eval()
    assert gen.code_shape == code_shape
    with torch.no_grad():
        out = gen(torch.rand(2, *code_shape))
    assert out.shape == (2, 3, 256, 256)


def test_output_layer_is_linear_and_hidden_layers_leak_at_0_3():
    gen = DeePSimGenerator("fc6").eval()
    for p in gen.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        gen.deconv0.bias.fill_(-5.0)  # a linear output passes a negative bias through unchanged
        out = gen(torch.zeros(1, 4096))
    assert torch.allclose(out, torch.full_like(out, -5.0))
    with torch.no_grad():
        gen.defc7.bias.fill_(-1.0)
        hidden = torch.nn.functional.leaky_relu(gen.defc7(torch.zeros(1, 4096)), 0.3)
    assert torch.allclose(hidden, torch.full_like(hidden, -0.3))


def test_pool5_variant_has_its_rconv_stack():
    state = DeePSimGenerator("pool5").state_dict()
    assert state["Rconv6.weight"].shape == (512, 256, 3, 3)
    assert state["Rconv8.weight"].shape == (512, 512, 3, 3)
    assert state["deconv5.weight"].shape == (512, 256, 4, 4)
    assert "defc7.weight" not in state


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="fc6, fc7, fc8, pool5"):
        DeePSimGenerator("conv5")
