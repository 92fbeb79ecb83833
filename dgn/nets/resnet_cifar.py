"""ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2) with the parameter-free "option A" shortcut.

The layout follows akamaster/pytorch_resnet_cifar10, so ``state_dict()`` keys are those of its
released checkpoints once their ``module.`` prefix is stripped: ``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.bn1``, ..., ``layer3.2.bn2``, ``linear``. The shortcut and the
activations are modules too (``layer2.0.shortcut``, ``layer1.0.relu2`` ...), so forward hooks can
reach every intermediate tensor by ``named_modules()`` name; they hold no parameters.

Input: 32x32 RGB in 0..1, normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)
(the ``cifar10-resnet`` pixel space). Output: 10 logits (airplane automobile bird cat deer dog frog
horse ship truck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad ``pad`` channels on each side (no parameters)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(planes // 4)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """A CIFAR ResNet: 3x3 stem with 16 channels, three stages of 16/32/64 channels, GAP, Linear.

    Args:
        num_blocks: BasicBlocks per stage ((3, 3, 3) is ResNet-20).
        num_classes: outputs of the final Linear layer.
    """

    input_size = (32, 32)

    def __init__(self, num_blocks: tuple[int, int, int] = (3, 3, 3), num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        in_planes = 16
        stages = []
        for planes, blocks, stride in zip((16, 32, 64), num_blocks, (1, 2, 2)):
            layers = []
            for s in [stride] + [1] * (blocks - 1):
                layers.append(BasicBlock(in_planes, planes, s))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the reference implementation's initialisation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 32, 32) in the ``cifar10-resnet`` space -> logits (B, num_classes)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.flatten(self.avgpool(out)))


def resnet20_cifar10(num_classes: int = 10) -> ResNetCifar:
    """ResNet-20 (3 blocks per stage, 0.27M parameters) with default initialisation; load weights after."""
    return ResNetCifar((3, 3, 3), num_classes)
