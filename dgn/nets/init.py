"""Weight initialisation shared by the networks defined here."""

from __future__ import annotations

from torch import nn


def he_init(module: nn.Module) -> None:
    """He (msra) normal weights for every Conv2d and Linear layer of ``module``, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
