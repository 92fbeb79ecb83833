"""The DeePSim discriminator (Dosovitskiy & Brox, 2016): an image branch and a code branch.

The image branch is a stack of plain-ReLU convolutions followed by global average pooling (the
original "AvgPool 11" on its 11x11 map); the code branch is fully connected layers on the code
the generator was given; the two are concatenated and classified as real / generated (2 logits,
softmax loss). ``DeePSimDiscriminator.imagenet()`` has the original sizes for 227x227 crops and
4096-d codes; ``DeePSimDiscriminator.small()`` suits 32x32 images.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from dgn.nets.init import he_init

ConvSpec = tuple[int, int, int, int]  # out_channels, kernel, stride, padding

IMAGENET_CONVS: tuple[ConvSpec, ...] = (
    (32, 7, 4, 0),
    (64, 5, 1, 0),
    (128, 3, 2, 0),
    (256, 3, 1, 0),
    (256, 3, 2, 0),
)
SMALL_CONVS: tuple[ConvSpec, ...] = ((32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 1, 1), (128, 3, 2, 1))


class DeePSimDiscriminator(nn.Module):
    """Image + code discriminator; ``forward(image, code)`` returns (B, 2) logits (index 1 = real).

    Args:
        code_size: number of code units (flattened).
        convs: (out_channels, kernel, stride, padding) per image conv layer (named conv1, conv2, ...).
        code_widths: widths of the code branch's FC layers (named code_fc1, code_fc2, ...).
        fc_width: width of the hidden FC layer after the concatenation.
        dropout: dropout probability before each of the two head layers.
        in_channels: image channels.
        input_scale: images are multiplied by this first (e.g. 1/64 for 0..255-scale pixels).
    """

    def __init__(
        self,
        code_size: int,
        convs: Sequence[ConvSpec] = IMAGENET_CONVS,
        code_widths: Sequence[int] = (1024, 512),
        fc_width: int = 512,
        dropout: float = 0.5,
        in_channels: int = 3,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.code_size = code_size
        image: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for i, (out, k, s, p) in enumerate(convs, start=1):
            image[f"conv{i}"] = nn.Conv2d(channels, out, k, stride=s, padding=p)
            image[f"relu{i}"] = nn.ReLU(inplace=True)
            channels = out
        image["pool"] = nn.AdaptiveAvgPool2d(1)
        image["flatten"] = nn.Flatten(1)
        self.image = nn.Sequential(image)
        code: OrderedDict[str, nn.Module] = OrderedDict()
        width = code_size
        for i, out in enumerate(code_widths, start=1):
            code[f"code_fc{i}"] = nn.Linear(width, out)
            code[f"code_relu{i}"] = nn.ReLU(inplace=True)
            width = out
        self.code = nn.Sequential(code)
        self.head = nn.Sequential(
            OrderedDict(
                drop1=nn.Dropout(dropout),
                fc1=nn.Linear(channels + width, fc_width),
                relu1=nn.ReLU(inplace=True),
                drop2=nn.Dropout(dropout),
                fc2=nn.Linear(fc_width, 2),
            )
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """msra initialisation, zero biases (the original used msra with coefficient 0.1 on some layers)."""
        he_init(self)
        with torch.no_grad():
            self.head.fc2.weight.mul_(0.1)

    def forward(self, image: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) for images (B, C, H, W) paired with their codes (B, code_size or code shape)."""
        features = self.image(image * self.input_scale)
        code_features = self.code(code.flatten(1))
        return self.head(torch.cat([features, code_features], dim=1))

    @classmethod
    def imagenet(cls, code_size: int = 4096) -> DeePSimDiscriminator:
        """The original sizes: five convs for 227x227 crops (maps 56, 52, 25, 23, 11), code FC 1024 -> 512."""
        return cls(code_size, IMAGENET_CONVS, (1024, 512), 512, input_scale=1.0 / 64)

    @classmethod
    def small(cls, code_size: int = 512) -> DeePSimDiscriminator:
        """A small discriminator for 32x32 images: four 3x3 convs (maps 32, 16, 16, 8), code FC 256 -> 128."""
        return cls(code_size, SMALL_CONVS, (256, 128), 256, input_scale=1.0 / 64)
