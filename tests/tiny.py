"""Small hand-made networks for fast tests (captum's style: tiny nets, known behaviour)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dgn import spaces
from dgn.models import Classifier, Generator

CODE = 16


class TinyGenerator(nn.Module):
    """code (16) -> 3x40x40 image on the Caffe 0..255 scale (BGR minus mean), leaky like DeePSim."""

    def __init__(self) -> None:
        super().__init__()
        self.defc = nn.Linear(CODE, 8 * 5 * 5)
        self.deconv1 = nn.ConvTranspose2d(8, 8, 4, 2, 1)
        self.deconv0 = nn.ConvTranspose2d(8, 3, 4, 2, 1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = nn.functional.leaky_relu(self.defc(code), 0.3).view(-1, 8, 5, 5)
        x = nn.functional.leaky_relu(self.deconv1(x), 0.3)
        return self.up(self.deconv0(x)) * 40.0


def tiny_classifier() -> nn.Sequential:
    """36x36 input; conv1/conv2 followed by in-place ReLUs (the pre-ReLU trap), then fc layers."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 6, 5, stride=2),
            relu1=nn.ReLU(inplace=True),
            conv2=nn.Conv2d(6, 8, 3, padding=1),
            relu2=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(2, ceil_mode=True),
            flatten=nn.Flatten(1),
            fc6=nn.Linear(8 * 8 * 8, 32),
            relu6=nn.ReLU(inplace=True),
            fc8=nn.Linear(32, 5),
        )
    )


def tiny_pair(seed: int = 0) -> tuple[Generator, Classifier]:
    """A tiny generator and classifier wired like the real ones (Caffe space, centre crop 40 -> 36)."""
    torch.manual_seed(seed)
    gen = TinyGenerator().eval()
    clf = tiny_classifier().eval()
    for p in list(gen.parameters()) + list(clf.parameters()):
        p.requires_grad_(False)
    g = Generator(gen, spaces.CAFFE_BGR_IMAGENET.with_size((40, 40)), (CODE,), "tiny-gen", 3.0, "random")
    c = Classifier(clf, spaces.CAFFE_BGR_IMAGENET.with_size((36, 36)), "tiny-clf", "random")
    return g, c
