"""DeePSim "upconv" generators (Dosovitskiy & Brox, 2016), exactly as the released Caffe nets.

Attribute names are the Caffe layer names, so ``state_dict()`` keys are ``defc7.weight ...
deconv0.weight`` as in the released PyTorch conversion (HF ``binxu/DeePSim_DosovitskiyBrox2016``)
and real weights load without renaming. Every Caffe ``Deconvolution`` (including ``conv5_1``,
``conv4_1`` and ``conv3_1``) is an ``nn.ConvTranspose2d``; their biases are zero in the released
weights but are kept so the released keys match.

Output: BGR, minus the ImageNet mean, on the 0..255 scale, 256x256, not clamped
(the ``caffe-bgr-imagenet`` pixel space).
"""

from __future__ import annotations

import torch
from torch import nn

LEAK = 0.3  # negative_slope of every ReLU in the released prototxts

# (name, in_channels, out_channels, kernel, stride, padding) of the shared up-convolution stack.
_UPCONV_STACK = (
    ("deconv5", 256, 256, 4, 2, 1),
    ("conv5_1", 256, 512, 3, 1, 1),
    ("deconv4", 512, 256, 4, 2, 1),
    ("conv4_1", 256, 256, 3, 1, 1),
    ("deconv3", 256, 128, 4, 2, 1),
    ("conv3_1", 128, 128, 3, 1, 1),
    ("deconv2", 128, 64, 4, 2, 1),
    ("deconv1", 64, 32, 4, 2, 1),
    ("deconv0", 32, 3, 4, 2, 1),
)


class DeePSimGenerator(nn.Module):
    """A DeePSim generator: code -> 3x256x256 image in Caffe BGR-minus-mean space.

    Args:
        variant: which released generator: ``"fc6"``, ``"fc7"`` (4096-d codes), ``"fc8"`` (1000-d),
            or ``"pool5"`` (256x6x6 codes).
    """

    variants = ("fc6", "fc7", "fc8", "pool5")

    def __init__(self, variant: str = "fc6") -> None:
        super().__init__()
        if variant not in self.variants:
            raise ValueError(f"unknown DeePSim variant {variant!r}; choose one of {', '.join(self.variants)}")
        self.variant = variant
        first_deconv_in = 256
        if variant == "pool5":
            self.code_shape: tuple[int, ...] = (256, 6, 6)
            self.Rconv6 = nn.Conv2d(256, 512, 3, padding=1)
            self.Rconv7 = nn.Conv2d(512, 512, 3, padding=1)
            self.Rconv8 = nn.Conv2d(512, 512, 3, padding=0)
            first_deconv_in = 512
        else:
            code_size = 1000 if variant == "fc8" else 4096
            self.code_shape = (code_size,)
            self.defc7 = nn.Linear(code_size, 4096)
            self.defc6 = nn.Linear(4096, 4096)
            self.defc5 = nn.Linear(4096, 4096)
        for name, cin, cout, k, s, p in _UPCONV_STACK:
            if name == "deconv5":
                cin = first_deconv_in
            setattr(self, name, nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p))
        self._upconv_names = [spec[0] for spec in _UPCONV_STACK]

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """Map codes (B, *code_shape) to images (B, 3, 256, 256), BGR minus mean, 0..255 scale."""
        act = nn.functional.leaky_relu
        if self.variant == "pool5":
            x = code.view(-1, *self.code_shape)
            for layer in (self.Rconv6, self.Rconv7, self.Rconv8):
                x = act(layer(x), LEAK)
        else:
            x = code.view(-1, self.code_shape[0])
            for layer in (self.defc7, self.defc6, self.defc5):
                x = act(layer(x), LEAK)
            x = x.view(-1, 256, 4, 4)
        for name in self._upconv_names:
            x = getattr(self, name)(x)
            if name != "deconv0":  # the output layer is linear
                x = act(x, LEAK)
        return x

