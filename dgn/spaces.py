"""Pixel spaces and the explicit conversions between them.

Every generator and classifier declares the space of its images: channel order, value scale,
per-channel mean and std, and (for classifiers) the input size. ``convert`` maps a batch from
one space to another through plain RGB 0..1, and ``fit`` crops or resizes it to the target
size. Both are differentiable, so a Caffe-trained fc6 prior can drive a torchvision ResNet.

Size policy of ``fit`` (``mode="auto"``):
- target size == source size: unchanged;
- target at least 85% of the source (227 or 224 from a 256 generator): a centre crop with the
  top-left corner at ``((H - h) // 2, (W - w) // 2)``, as the original act_max did
  ([14:241] for 227, [16:240] for 224);
- smaller targets (e.g. a 32x32 CIFAR net): the centre ``227/256`` of the image (the region the
  generator's training loss saw) is resized to the target with antialiased bilinear
  interpolation;
- larger targets: bilinear upsampling of the whole image.
``mode="crop"`` and ``mode="resize"`` force one behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dgn.errors import DGNError

IMAGENET_MEAN_BGR_CAFFE = (104.0, 117.0, 123.0)  # the mean_value the DeePSim generators were trained with
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

CROP_FRACTION = 227 / 256  # share of a generator image that its training loss saw
_CROP_THRESHOLD = 0.85


@dataclass(frozen=True)
class PixelSpace:
    """How a network's images are encoded.

    A pixel value v in this space relates to RGB in 0..1 as ``v = (rgb * scale - mean) / std`` per
    channel, with channels in ``channel_order``. ``mean`` and ``std`` are given in that order.
    """

    name: str
    channel_order: str = "RGB"  # "RGB", "BGR" or "L" (one grey channel)
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None  # (H, W) the network expects; None = any

    def with_size(self, size: tuple[int, int] | None) -> PixelSpace:
        """The same encoding at another image size."""
        return PixelSpace(self.name, self.channel_order, self.scale, self.mean, self.std, size)

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "L" else 3


CAFFE_BGR_IMAGENET = PixelSpace("caffe-bgr-imagenet", "BGR", 255.0, IMAGENET_MEAN_BGR_CAFFE, (1.0, 1.0, 1.0))
RGB01 = PixelSpace("rgb01")
TORCHVISION_IMAGENET = PixelSpace("torchvision-imagenet", "RGB", 1.0, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)

SPACES: dict[str, PixelSpace] = {s.name: s for s in (CAFFE_BGR_IMAGENET, RGB01, TORCHVISION_IMAGENET)}


def get_space(name: str) -> PixelSpace:
    """Look up a named pixel space."""
    try:
        return SPACES[name]
    except KeyError:
        raise DGNError(f"unknown pixel space {name!r}; valid: {', '.join(sorted(SPACES))}") from None


def _per_channel(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def to_rgb01(x: torch.Tensor, space: PixelSpace) -> torch.Tensor:
    """Decode a batch (B, C, H, W) in ``space`` to RGB 0..1 (not clamped)."""
    _check_channels(x, space)
    rgb = (x * _per_channel(space.std, x) + _per_channel(space.mean, x)) / space.scale
    if space.channel_order == "BGR":
        rgb = rgb.flip(1)
    elif space.channel_order == "L":
        rgb = rgb.expand(-1, 3, -1, -1)
    return rgb


def from_rgb01(rgb: torch.Tensor, space: PixelSpace) -> torch.Tensor:
    """Encode an RGB 0..1 batch (B, 3, H, W) into ``space``."""
    if space.channel_order == "BGR":
        x = rgb.flip(1)
    elif space.channel_order == "L":
        x = rgb.mean(1, keepdim=True)
    else:
        x = rgb
    return (x * space.scale - _per_channel(space.mean, x)) / _per_channel(space.std, x)


def _check_channels(x: torch.Tensor, space: PixelSpace) -> None:
    if x.dim() != 4 or x.shape[1] != space.channels:
        raise DGNError(
            f"expected a batch of shape (B, {space.channels}, H, W) in pixel space {space.name!r}, "
            f"got {tuple(x.shape)}"
        )


def _same_encoding(a: PixelSpace, b: PixelSpace) -> bool:
    return (a.channel_order, a.scale, a.mean, a.std) == (b.channel_order, b.scale, b.mean, b.std)


def crop_box(src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """Top, left, height, width of the centre crop of size ``dst`` from ``src``, as act_max placed it."""
    (h_src, w_src), (h, w) = src, dst
    return (h_src - h) // 2, (w_src - w) // 2, h, w


def fit_region(src: tuple[int, int], size: tuple[int, int] | None, mode: str = "auto") -> tuple[tuple[int, int, int, int], bool]:
    """The region of a ``src``-sized image that :func:`fit` maps onto ``size``.

    Returns:
        ``((top, left, height, width), resized)``: the source box, and whether it is then resized.
    """
    if mode not in ("auto", "crop", "resize"):
        raise DGNError(f"unknown fit mode {mode!r}; valid: auto, crop, resize")
    whole = (0, 0, src[0], src[1])
    if size is None or tuple(src) == tuple(size):
        return whole, False
    fits_inside = size[0] <= src[0] and size[1] <= src[1]
    close = fits_inside and min(size[0] / src[0], size[1] / src[1]) >= _CROP_THRESHOLD
    if mode == "crop" or (mode == "auto" and close):
        if not fits_inside:
            raise DGNError(f"cannot crop {src[0]}x{src[1]} images to the larger {size[0]}x{size[1]}")
        return crop_box(src, size), False
    if mode == "auto" and fits_inside:
        return crop_box(src, (round(src[0] * CROP_FRACTION), round(src[1] * CROP_FRACTION))), True
    return whole, True


def fit(x: torch.Tensor, size: tuple[int, int] | None, mode: str = "auto") -> torch.Tensor:
    """Crop or resize a batch to ``size`` (H, W) by the policy in the module docstring."""
    (top, left, h, w), resized = fit_region((x.shape[-2], x.shape[-1]), size, mode)
    x = x[..., top : top + h, left : left + w]
    if not resized:
        return x
    shrinking = size[0] < h or size[1] < w
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)


def convert(x: torch.Tensor, src: PixelSpace, dst: PixelSpace, mode: str = "auto") -> torch.Tensor:
    """Convert a batch from pixel space ``src`` to ``dst``, including the crop/resize to ``dst.size``.

    Args:
        x: images (B, C, H, W) encoded in ``src``.
        src: the space of ``x``.
        dst: the space to produce; its ``size`` (if any) is the output size.
        mode: size policy, see :func:`fit`.

    Returns:
        The images encoded in ``dst``, differentiable with respect to ``x``.
    """
    x = fit(x, dst.size, mode)
    if _same_encoding(src, dst):
        return x
    return from_rgb01(to_rgb01(x, src), dst)


def display_rgb01(x: torch.Tensor, space: PixelSpace, style: str = "mean") -> torch.Tensor:
    """Images for a person to look at: RGB in [0, 1], clamped.

    Args:
        x: images in ``space``.
        style: ``"mean"`` adds the space's mean back (a faithful decode); ``"act_max"`` reproduces the
            original DGN-AM ``save_image`` for Caffe spaces: BGR->RGB, then clip(x, -120, 120) / 240 + 0.5
            (it ignores the mean, so figures match the paper's); ``"imsave"`` then stretches each image
            from its own minimum to its maximum, as the original's ``scipy.misc.imsave`` (``bytescale``)
            did to the PNGs it wrote.
    """
    if style == "mean":
        return to_rgb01(x, space).clamp(0, 1)
    if style in ("act_max", "imsave"):
        rgb = x.flip(1) if space.channel_order == "BGR" else x
        rgb = rgb.clamp(-120, 120) / 240 + 0.5
        if style == "act_max":
            return rgb
        low = rgb.flatten(1).min(1).values.view(-1, 1, 1, 1)
        span = rgb.flatten(1).max(1).values.view(-1, 1, 1, 1) - low
        return (rgb - low) / torch.where(span > 0, span, torch.ones_like(span))
    raise DGNError(f"unknown display style {style!r}; valid: {', '.join(DISPLAYS)}")


DISPLAYS = ("act_max", "imsave", "mean")
