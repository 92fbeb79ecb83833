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


def _lrn() -> nn.LocalResponseNorm:
    # Caffe LRN (ACROSS_CHANNELS): x / (k + alpha/n * sum_window x^2)^beta, the same formula as torch's.
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class CaffeNet(nn.Sequential):
    """CaffeNet / the reference Caffe AlexNet, with Caffe's layer names.

    Args:
        num_classes: outputs of fc8 (1000 for ImageNet).
        width: scales the channel counts (1.0 = the real net); small widths make test nets.
        fc_width: units of fc6 and fc7 (4096 in the real net).
    """

    input_size = (227, 227)

    def __init__(self, num_classes: int = 1000, width: float = 1.0, fc_width: int = 4096) -> None:
        c1, c2, c3, c4, c5 = (max(2, round(c * width / 2) * 2) for c in (96, 256, 384, 384, 256))
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(3, c1, 11, stride=4),
            relu1=nn.ReLU(inplace=True),
            pool1=_pool(),
            norm1=_lrn(),
            conv2=nn.Conv2d(c1, c2, 5, padding=2, groups=2),
            relu2=nn.ReLU(inplace=True),
            pool2=_pool(),
            norm2=_lrn(),
            conv3=nn.Conv2d(c2, c3, 3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(c3, c4, 3, padding=1, groups=2),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(c4, c5, 3, padding=1, groups=2),
            relu5=nn.ReLU(inplace=True),
            pool5=_pool(),
            flatten=nn.Flatten(1),
            fc6=nn.Linear(c5 * 6 * 6, fc_width),
            relu6=nn.ReLU(inplace=True),
            drop6=nn.Dropout(0.5),
            fc7=nn.Linear(fc_width, fc_width),
            relu7=nn.ReLU(inplace=True),
            drop7=nn.Dropout(0.5),
            fc8=nn.Linear(fc_width, num_classes),
        )
        super().__init__(layers)


def caffenet(num_classes: int = 1000) -> CaffeNet:
    """The full-size CaffeNet with PyTorch's default initialisation (load real weights after)."""
    return CaffeNet(num_classes)
