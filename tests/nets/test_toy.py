import torch

from dgn import spaces
from dgn.layers import forward_to
from dgn.nets.toy import (
    CIFAR_CAFFE_32,
    CifarCaffeNet,
    CifarGenerator,
    cifar_caffenet,
    cifar_generator,
    generator_space,
)

CAFFE_NAMES = [
    "conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3", "relu3", "conv4", "relu4",
    "conv5", "relu5", "pool5", "flatten", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8",
]  # fmt: skip


def test_classifier_has_caffenet_layer_names_and_shapes():
    net = cifar_caffenet().eval()
    assert [n for n, _ in net.named_children()] == CAFFE_NAMES
    assert all(m.inplace for n, m in net.named_children() if n.startswith("relu"))
    x = torch.randn(2, 3, 32, 32) * 60
    out = forward_to(net, x, ["conv1", "pool1", "pool2", "conv5", "pool5", "fc6", "fc8"], stop_early=False)
    shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
    assert shapes == {
        "conv1": (32, 32, 32), "pool1": (32, 16, 16), "pool2": (64, 8, 8), "conv5": (64, 8, 8),
        "pool5": (64, 4, 4), "fc6": (512,), "fc8": (10,),
    }  # fmt: skip
    # fc6 is captured before the in-place relu6: it has negative values
    assert (out["fc6"] < 0).any()


def test_lrn_option_replaces_the_identity_placeholders():
    assert isinstance(CifarCaffeNet(lrn=True).norm1, torch.nn.LocalResponseNorm)
    assert isinstance(CifarCaffeNet().norm2, torch.nn.Identity)


def test_generator_maps_codes_to_images_and_fits_the_classifier():
    g = cifar_generator().eval()
    assert g.code_shape == (512,)
    assert [n for n, _ in g.named_children()] == [
        "defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1", "deconv0",
    ]  # fmt: skip
    code = torch.rand(3, 512) * 2
    img = g(code)
    assert img.shape == (3, 3, 32, 32)
    assert 5 < img.std() < 200  # visible contrast on the 0..255 scale at initialisation
    g64 = CifarGenerator(out_size=64).eval()
    big = g64(code)
    assert big.shape == (3, 3, 64, 64)
    fitted = spaces.convert(big, generator_space(64), CIFAR_CAFFE_32)
    assert fitted.shape == (3, 3, 32, 32)


def test_generator_output_is_linear_and_rows_are_independent():
    g = cifar_generator().eval()
    codes = torch.rand(4, 512)
    with torch.no_grad():
        batched = g(codes)
        single = torch.cat([g(codes[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-3)
    assert (batched < 0).any() and (batched > 0).any()  # no ReLU/tanh at the output


def test_both_shipped_architectures_stay_well_under_25_mb():
    params = sum(p.numel() for p in cifar_caffenet().parameters()) + sum(
        p.numel() for p in cifar_generator().parameters()
    )
    assert params * 4 < 20e6
