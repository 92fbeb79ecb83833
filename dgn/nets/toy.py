"""The small nets of the offline CIFAR-10 world: a CaffeNet-shaped classifier and its DeePSim-style prior.

``CifarCaffeNet`` is built like CaffeNet (an ``nn.Sequential`` with the Caffe layer names conv1 ...
fc8, in-place ReLUs, ceil-mode max pools, optional LRN) but for 32x32 inputs and 10 classes, so
every tool addresses it exactly as the real net. ``CifarGenerator`` is a scaled-down DeePSim fc6
generator (LeakyReLU 0.3, defc7/defc6/defc5 then up-convolutions, linear output, no tanh) that
maps the classifier's post-ReLU fc6 code to an image.

Both use the Caffe convention of the real DGN-AM nets (the ``caffe-bgr-imagenet`` pixel space:
BGR, 0..255 minus the mean (104, 117, 123)), so the act_max display mapping and the 0..ub code
bounds behave as in the original. The generator's output is 32x32 by default: the CIFAR images
themselves are 32x32, so a 64x64 output would only add unsupervised upsampling and 4x the
convolution cost (``out_size=64`` is available; ``dgn.spaces.fit`` then resizes its centre
227/256 to the classifier's 32x32).
"""

from __future__ import annotations

import torch
from torch import nn

from dgn import spaces
from dgn.nets.caffenet import caffenet_layers
from dgn.nets.init import he_init
from dgn.spaces import PixelSpace

LEAK = 0.3  # DeePSim's LeakyReLU slope
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_CAFFE_32 = spaces.CAFFE_BGR_IMAGENET.with_size((32, 32))  # the classifier's input space


def generator_space(out_size: int = 32) -> PixelSpace:
    """The pixel space of a :class:`CifarGenerator` output of side ``out_size``."""
    return spaces.CAFFE_BGR_IMAGENET.with_size((out_size, out_size))


class CifarCaffeNet(nn.Sequential):
    """A CaffeNet-shaped classifier for 32x32 images (Caffe BGR-minus-mean input, 0..255 scale).

    Spatial sizes: conv1 32 -> pool1 16 -> conv2 16 -> pool2 8 -> conv3..conv5 8 -> pool5 4.

    Args:
        num_classes: outputs of fc8.
        channels: output channels of conv1 ... conv5.
        fc_width: units of fc6 and fc7 (the code width of the matching generator).
        lrn: use Caffe's LRN as norm1/norm2 (``nn.Identity`` placeholders otherwise, so names stay).
    """

    input_size = (32, 32)

    def __init__(
        self,
        num_classes: int = 10,
        channels: tuple[int, int, int, int, int] = (32, 64, 128, 128, 64),
        fc_width: int = 512,
        lrn: bool = False,
    ) -> None:
        conv1 = nn.Conv2d(3, channels[0], 3, padding=1)
        layers = caffenet_layers(conv1, channels, pool5_side=4, fc_width=fc_width, num_classes=num_classes,
                                 groups=1, lrn=lrn)
        super().__init__(layers)
        self.code_size = fc_width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation, with conv1 scaled for the 0..255 input scale and a small fc8."""
        he_init(self)
        with torch.no_grad():
            self.conv1.weight.div_(64.0)  # CIFAR pixels minus the mean have a std of about 64
            self.fc8.weight.mul_(0.1)


class CifarGenerator(nn.Module):
    """A small DeePSim-style generator: code (B, code_size) -> image (B, 3, out, out), Caffe BGR 0..255.

    Layers: defc7, defc6, defc5 (Linear, LeakyReLU 0.3), reshape to (base, 4, 4), then
    deconv5 / conv5_1 / deconv4 / conv4_1 / deconv3 / conv3_1 (``ConvTranspose2d``, stride 2 with
    k4 p1 and stride 1 with k3 p1, LeakyReLU 0.3), for 64x64 one more deconv2, and a linear
    3x3 ``deconv0`` to 3 channels (no tanh, as DeePSim).

    Args:
        code_size: width of the code (the classifier's fc6).
        fc_width: width of defc7 and defc6.
        base: channels of the 4x4 map (defc5 has ``base * 16`` units); later stages halve it.
        out_size: 32 or 64.
    """

    def __init__(
        self, code_size: int = 512, fc_width: int = 1024, base: int = 64, out_size: int = 32
    ) -> None:
        super().__init__()
        if out_size not in (32, 64):
            raise ValueError(f"out_size must be 32 or 64, got {out_size}")
        self.code_shape: tuple[int, ...] = (code_size,)
        self.out_size = out_size
        self.base = base
        self.defc7 = nn.Linear(code_size, fc_width)
        self.defc6 = nn.Linear(fc_width, fc_width)
        self.defc5 = nn.Linear(fc_width, base * 16)
        b2, b4 = base // 2, base // 4
        stack = [
            ("deconv5", base, base, 4, 2, 1),
            ("conv5_1", base, base, 3, 1, 1),
            ("deconv4", base, b2, 4, 2, 1),
            ("conv4_1", b2, b2, 3, 1, 1),
            ("deconv3", b2, b4, 4, 2, 1),
            ("conv3_1", b4, b4, 3, 1, 1),
        ]
        last = b4
        if out_size == 64:
            stack.append(("deconv2", b4, b4 // 2, 4, 2, 1))
            last = b4 // 2
        stack.append(("deconv0", last, 3, 3, 1, 1))
        for name, cin, cout, k, s, p in stack:
            setattr(self, name, nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p))
        self._upconv_names = [spec[0] for spec in stack]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """msra-style initialisation for LeakyReLU 0.3, zero biases, initial output of a few tens."""
        for layer in self.modules():
            if isinstance(layer, (nn.Linear, nn.ConvTranspose2d)):
                mode = "fan_out" if isinstance(layer, nn.ConvTranspose2d) else "fan_in"
                nn.init.kaiming_normal_(layer.weight, a=LEAK, mode=mode, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        with torch.no_grad():
            # kaiming's fan for transposed convs ignores the stride, so the stack shrinks the signal;
            # this factor brings the initial output to roughly +-30 on the 0..255 scale.
            self.deconv0.weight.mul_(200.0)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """Map codes (B, code_size) to images (B, 3, out_size, out_size), BGR minus mean, 0..255."""
        act = nn.functional.leaky_relu
        x = code.reshape(-1, self.code_shape[0])
        for layer in (self.defc7, self.defc6, self.defc5):
            x = act(layer(x), LEAK)
        x = x.view(-1, self.base, 4, 4)
        for name in self._upconv_names:
            x = getattr(self, name)(x)
            if name != "deconv0":
                x = act(x, LEAK)
        return x


def cifar_caffenet(num_classes: int = 10) -> CifarCaffeNet:
    """The shipped ``cifar-caffenet`` architecture (fc6 width 512, no LRN)."""
    return CifarCaffeNet(num_classes)


def cifar_generator() -> CifarGenerator:
    """The shipped ``cifar-deepsim-fc6`` architecture (512-d code -> 3x32x32)."""
    return CifarGenerator()
