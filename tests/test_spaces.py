import pytest
import torch

from dgn import spaces
from dgn.errors import DGNError


def test_caffe_bgr_round_trips_through_rgb01():
    rgb = torch.rand(2, 3, 8, 8)
    caffe = spaces.from_rgb01(rgb, spaces.CAFFE_BGR_IMAGENET)
    # Channel 0 of the Caffe space is blue, on the 0..255 scale, minus 104.
    assert torch.allclose(caffe[:, 0], rgb[:, 2] * 255 - 104, atol=1e-4)
    assert torch.allclose(spaces.to_rgb01(caffe, spaces.CAFFE_BGR_IMAGENET), rgb, atol=1e-6)


def test_caffe_to_torchvision_normalisation():
    rgb = torch.rand(1, 3, 4, 4)
    caffe = spaces.from_rgb01(rgb, spaces.CAFFE_BGR_IMAGENET)
    tv = spaces.convert(caffe, spaces.CAFFE_BGR_IMAGENET, spaces.TORCHVISION_IMAGENET)
    mean = torch.tensor(spaces.IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(spaces.IMAGENET_STD_RGB).view(1, 3, 1, 1)
    assert torch.allclose(tv, (rgb - mean) / std, atol=1e-5)


def test_227_crop_is_the_original_centre_crop():
    x = torch.randn(1, 3, 256, 256)
    out = spaces.convert(x, spaces.CAFFE_BGR_IMAGENET, spaces.CAFFE_BGR_IMAGENET.with_size((227, 227)))
    assert torch.equal(out, x[:, :, 14:241, 14:241])


def test_224_crop_starts_at_16_like_the_googlenet_script():
    x = torch.randn(1, 3, 256, 256)
    assert torch.equal(spaces.fit(x, (224, 224)), x[:, :, 16:240, 16:240])


def test_small_targets_resize_the_generators_trained_centre():
    (top, left, h, w), resized = spaces.fit_region((256, 256), (32, 32))
    assert (top, left, h, w) == (14, 14, 227, 227) and resized
    x = torch.ones(1, 3, 256, 256)
    assert spaces.fit(x, (32, 32)).shape == (1, 3, 32, 32)


def test_conversion_is_differentiable():
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    y = spaces.convert(x, spaces.CAFFE_BGR_IMAGENET, spaces.TORCHVISION_IMAGENET.with_size((224, 224)))
    y.sum().backward()
    assert x.grad is not None and x.grad[:, :, 16:240, 16:240].abs().min() > 0 and x.grad[:, :, :16].abs().max() == 0


def test_act_max_display_mapping():
    x = torch.tensor([[-200.0, 0.0, 60.0]]).view(1, 3, 1, 1)  # BGR
    out = spaces.display_rgb01(x, spaces.CAFFE_BGR_IMAGENET, "act_max")
    assert torch.allclose(out.flatten(), torch.tensor([0.75, 0.5, 0.0]))  # RGB: clip(-120,120)/240+0.5


def test_imsave_display_stretches_each_image_as_the_originals_saved_pngs():
    """act_max's save_image, then scipy.misc.imsave's bytescale: each image from its own min to its max."""
    from dgn.render import to_uint8

    x = torch.tensor([[[-60.0, 0.0], [30.0, 60.0]]] * 3).unsqueeze(0)  # every channel spans -60..60
    x = torch.cat([x, x * 0.5])  # a second image of half the contrast
    act_max = spaces.display_rgb01(x, spaces.CAFFE_BGR_IMAGENET, "act_max")
    saved = spaces.display_rgb01(x, spaces.CAFFE_BGR_IMAGENET, "imsave")
    for i in range(2):
        low, high = act_max[i].min(), act_max[i].max()
        torch.testing.assert_close(saved[i], (act_max[i] - low) / (high - low))
        assert saved[i].min() == 0 and saved[i].max() == 1
    torch.testing.assert_close(saved[0], saved[1])  # the stretch undoes the contrast difference
    assert (spaces.display_rgb01(torch.zeros(1, 3, 2, 2), spaces.CAFFE_BGR_IMAGENET, "imsave") == 0).all()
    png = to_uint8(x[0], spaces.CAFFE_BGR_IMAGENET, "imsave")
    assert png.min() == 0 and png.max() == 255
    with pytest.raises(DGNError, match="act_max, imsave, mean"):
        spaces.display_rgb01(x, spaces.CAFFE_BGR_IMAGENET, "stretch")


def test_errors_name_the_valid_choices():
    with pytest.raises(DGNError, match="auto, crop, resize"):
        spaces.fit(torch.zeros(1, 3, 8, 8), (4, 4), "squash")
    with pytest.raises(DGNError, match="caffe-bgr-imagenet"):
        spaces.get_space("nope")
    with pytest.raises(DGNError, match=r"\(B, 3, H, W\)"):
        spaces.to_rgb01(torch.zeros(3, 8, 8), spaces.RGB01)
