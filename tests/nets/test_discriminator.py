import torch

from dgn.layers import forward_to
from dgn.nets.discriminator import DeePSimDiscriminator


def test_imagenet_discriminator_has_the_original_feature_map_sizes():
    d = DeePSimDiscriminator.imagenet(4096).eval()
    names = [f"image.conv{i}" for i in range(1, 6)]
    out = forward_to(
        d.image, torch.randn(1, 3, 227, 227), [n.split(".", 1)[1] for n in names], stop_early=False
    )
    sizes = [v.shape[-1] for v in out.values()]
    assert sizes == [56, 52, 25, 23, 11]
    assert [v.shape[1] for v in out.values()] == [32, 64, 128, 256, 256]
    assert d(torch.randn(2, 3, 227, 227), torch.rand(2, 4096)).shape == (2, 2)


def test_small_discriminator_on_cifar_sizes_and_both_branches_matter():
    d = DeePSimDiscriminator.small(512).eval()
    image, code = torch.randn(3, 3, 32, 32) * 60, torch.rand(3, 512) * 3
    logits = d(image, code)
    assert logits.shape == (3, 2)
    assert not torch.allclose(d(image, code * 0), logits)  # the code branch reaches the output
    assert not torch.allclose(d(image * 0, code), logits)  # so does the image branch
    image.requires_grad_(True)
    code.requires_grad_(True)
    d(image, code)[:, 1].sum().backward()
    assert image.grad.abs().sum() > 0 and code.grad.abs().sum() > 0


def test_discriminator_accepts_spatial_codes_by_flattening():
    d = DeePSimDiscriminator(256 * 6 * 6, ((8, 3, 2, 1),), (16,), 16).eval()
    assert d(torch.randn(2, 3, 20, 20), torch.rand(2, 256, 6, 6)).shape == (2, 2)
