"""CaffeNet (``bvlc_reference_caffenet``) exactly as Caffe computes it.

Differences from torchvision's AlexNet that matter for DGN-AM: 96 conv1 filters, LRN after the
pool (not before), grouped conv2/conv4/conv5, and max pools that round the output size *up*
(``ceil_mode=True``). The fc6 generator prior inverts this network's fc6, so use this one (not
torchvision AlexNet) to reproduce the paper.

Input: 227x227, BGR, 0..255 minus the ImageNet mean (the ``caffe-bgr-imagenet`` pixel space).
Submodules carry the Caffe layer names (conv1 ... fc8), so ``state_dict()`` keys are
``conv1.weight ... fc8.bias``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def caffenet_layers(
    conv1: nn.Conv2d,
    channels: tuple[int, int, int, int, int],
    pool5_side: int,
    fc_width: int,
    num_classes: int,
    groups: int = 2,
    lrn: bool = True,
) -> OrderedDict[str, nn.Module]:
    """CaffeNet's layer stack with its Caffe names (conv1 ... fc8), for any size of the same shape.

    Args:
        conv1: the first convolution (CaffeNet: 11x11 stride 4); ``channels[0]`` must be its output.
        channels: output channels of conv1 ... conv5.
        pool5_side: spatial side of pool5's output (6 for a 227 input), which sizes fc6.
        fc_width: units of fc6 and fc7.
        num_classes: outputs of fc8.
        groups: groups of conv2, conv4 and conv5 (2 in Caffe's net: its two-GPU split).
        lrn: Caffe's LRN as norm1/norm2, else ``nn.Identity`` placeholders (so the names stay).
    """
    c1, c2, c3, c4, c5 = channels

    def pool() -> nn.MaxPool2d:  # Caffe rounds pooled sizes up
        return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

    def norm() -> nn.Module:
        # Caffe LRN (ACROSS_CHANNELS): x / (k + alpha/n * sum_window x^2)^beta, the same formula as torch's.
        return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0) if lrn else nn.Identity()

    return OrderedDict(
        conv1=conv1,
        relu1=nn.ReLU(inplace=True),
        pool1=pool(),
        norm1=norm(),
        conv2=nn.Conv2d(c1, c2, 5, padding=2, groups=groups),
        relu2=nn.ReLU(inplace=True),
        pool2=pool(),
        norm2=norm(),
        conv3=nn.Conv2d(c2, c3, 3, padding=1),
        relu3=nn.ReLU(inplace=True),
        conv4=nn.Conv2d(c3, c4, 3, padding=1, groups=groups),
        relu4=nn.ReLU(inplace=True),
        conv5=nn.Conv2d(c4, c5, 3, padding=1, groups=groups),
        relu5=nn.ReLU(inplace=True),
        pool5=pool(),
        flatten=nn.Flatten(1),
        fc6=nn.Linear(c5 * pool5_side * pool5_side, fc_width),
        relu6=nn.ReLU(inplace=True),
        drop6=nn.Dropout(0.5),
        fc7=nn.Linear(fc_width, fc_width),
        relu7=nn.ReLU(inplace=True),
        drop7=nn.Dropout(0.5),
        fc8=nn.Linear(fc_width, num_classes),
    )


class CaffeNet(nn.Sequential):
    """CaffeNet / the reference Caffe AlexNet, with Caffe's layer names.

    Args:
        num_classes: outputs of fc8 (1000 for ImageNet).
    """

    input_size = (227, 227)

    def __init__(self, num_classes: int = 1000) -> None:
        channels = (96, 256, 384, 384, 256)
        conv1 = nn.Conv2d(3, channels[0], 11, stride=4)
        super().__init__(caffenet_layers(conv1, channels, pool5_side=6, fc_width=4096, num_classes=num_classes))


def caffenet(num_classes: int = 1000) -> CaffeNet:
    """The full-size CaffeNet with PyTorch's default initialisation (load real weights after)."""
    return CaffeNet(num_classes)
