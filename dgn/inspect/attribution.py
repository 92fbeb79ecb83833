"""Projecting one unit back to pixel space: deconvnet, guided backpropagation and gradient saliency.

Three siblings with one entry point each (captum's style): ``Deconvnet(model).attribute(x, "conv5:3")``.

- :class:`Saliency` (Simonyan et al. 2014): the plain gradient of the unit with respect to the input.
- :class:`Deconvnet` (Zeiler & Fergus 2014, seed 003): unpooling through the switches recorded in the
  forward pass (the max pool's own gradient routes there), rectification of the backward signal at
  every ReLU (the forward activation is ignored), and transposed filters (a convolution's own
  gradient). Contrast normalisation (LRN) is passed through unchanged, as the deconvnet has no
  inverse of it.
- :class:`GuidedBackprop` (Springenberg et al. 2015): the gradient, with only positive signal passing
  each ReLU *and* only where its forward input was positive.

The ReLU rules are applied on a copy of the model whose ``nn.ReLU`` modules (in-place or not) are
replaced by custom autograd modules. No backward hooks are used, so stock torchvision models with
``ReLU(inplace=True)`` work, and the caller's model is left untouched (the copy shares its
parameter tensors, so it costs no weight memory). ReLUs called as functions (``F.relu`` inside
``forward``) cannot be replaced: a model without any ``nn.ReLU`` module is refused rather than
silently giving the plain gradient.

Targets use the ``LAYER:UNIT[@Y,X]`` syntax of :mod:`dgn.targets`; the unit is read before the
layer's ReLU. A spatial target without a position uses, per image, the position where that
channel is strongest (the deconvnet paper projects a map's strongest activation).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from dgn.errors import DGNError
from dgn.layers import forward_to, resolve_layer
from dgn.spaces import PixelSpace
from dgn.targets import Target, as_target, resolve_target

METHODS = ("deconvnet", "guided", "saliency")


class _RuleReLU(torch.autograd.Function):
    """ReLU forward; backward by the deconvnet or guided-backpropagation rule."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str) -> torch.Tensor:
        ctx.rule = rule
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        passed = grad.clamp(min=0)  # both rules rectify the backward signal
        if ctx.rule == "guided":
            passed = passed * (x > 0)  # ... and guided backprop also keeps the forward mask
        return passed, None


class RuleReLU(nn.Module):
    """A ReLU (never in-place) whose backward pass follows ``rule`` ("deconvnet" or "guided")."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        if rule not in ("deconvnet", "guided"):
            raise DGNError(f"unknown ReLU rule {rule!r}; valid: deconvnet, guided")
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RuleReLU.apply(x, self.rule)

    def extra_repr(self) -> str:
        return f"rule={self.rule}"


class _PassBackward(torch.autograd.Function):
    """Forward ``module(x)``; backward passes the signal through unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, module: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class PassBackward(nn.Module):
    """Wraps a module (LRN) so that a deconvnet's backward pass skips it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PassBackward.apply(x, self.inner)


def modified_copy(model: nn.Module, rule: str | None) -> nn.Module:
    """A copy of ``model`` (eval mode, sharing its parameter and buffer tensors) with ReLUs following ``rule``.

    Args:
        model: the network; it is not modified.
        rule: "deconvnet", "guided", or None (a plain copy, for the gradient).

    Raises:
        DGNError: ``rule`` is given but the model has no ``nn.ReLU`` module to replace.
    """
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    clone = copy.deepcopy(model, memo=shared)
    clone.eval()
    if rule is None:
        return clone
    replaced = 0
    for parent in list(clone.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, child_name, RuleReLU(rule))
                replaced += 1
            elif rule == "deconvnet" and isinstance(child, nn.LocalResponseNorm):
                setattr(parent, child_name, PassBackward(child))
    if replaced == 0:
        raise DGNError(
            f"{type(model).__name__} has no nn.ReLU modules, so the {rule} rule cannot be applied: ReLUs called "
            "as functions (F.relu inside forward()) cannot be replaced; use --method saliency, or a model "
            "whose ReLUs are modules"
        )
    return clone


class _GradientAttribution:
    """Shared machinery: the gradient of one unit of a (modified copy of the) model w.r.t. the input."""

    rule: str | None = None

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.network = modified_copy(model, self.rule)

    def attribute(self, inputs: torch.Tensor, target: str | Target) -> torch.Tensor:
        """Project ``target`` back to the input.

        Args:
            inputs: (B, C, H, W) images in the model's pixel space.
            target: ``LAYER:UNIT`` or ``LAYER:UNIT@Y,X``; a spatial layer without a position uses each
                image's strongest position of that channel.

        Returns:
            (B, C, H, W): the projection of each image's unit, in the input's channel order.

        Raises:
            DGNError: unknown layer, unit or position out of range.
        """
        spec = as_target(target)
        layer = resolve_layer(self.network, spec.layer)
        param = next(self.network.parameters(), None)
        device = param.device if param is not None else inputs.device
        x = inputs.detach().to(device).clone().requires_grad_(True)
        with torch.enable_grad():
            out = forward_to(self.network, x, [layer])[layer]
            resolved = resolve_target(self.network, spec, tuple(out.shape[1:]))
            if out.dim() == 2:
                selected = out[:, resolved.unit]
            elif spec.position is None:
                selected = out[:, resolved.unit].flatten(1).amax(dim=1)
            else:
                y, x_pos = resolved.position
                selected = out[:, resolved.unit, y, x_pos]
            (grad,) = torch.autograd.grad(selected.sum(), x)
        return grad.detach()


class Saliency(_GradientAttribution):
    """Gradient saliency (Simonyan et al.): d unit / d input, by ordinary back-propagation.

    Args:
        model: the network (not modified).
        abs: return the absolute value of the gradient (Simonyan's map is its maximum over channels,
            see :func:`saliency_map`).
    """

    rule = None

    def __init__(self, model: nn.Module, abs: bool = False) -> None:
        super().__init__(model)
        self.abs = abs

    def attribute(self, inputs: torch.Tensor, target: str | Target) -> torch.Tensor:
        """The gradient of ``target`` w.r.t. ``inputs`` (its absolute value with ``abs=True``); see the base class."""
        grad = super().attribute(inputs, target)
        return grad.abs() if self.abs else grad


class Deconvnet(_GradientAttribution):
    """Zeiler & Fergus's deconvnet projection: switches for unpooling, rectified backward signal, transposed filters."""

    rule = "deconvnet"


class GuidedBackprop(_GradientAttribution):
    """Guided backpropagation (Springenberg et al.): the deconvnet rule and the forward ReLU mask together."""

    rule = "guided"


def attribution_method(name: str, model: nn.Module) -> _GradientAttribution:
    """The method called ``name`` (deconvnet, guided, saliency) on ``model``."""
    classes = {"deconvnet": Deconvnet, "guided": GuidedBackprop, "saliency": Saliency}
    if name not in classes:
        raise DGNError(f"unknown attribution method {name!r}; valid: {', '.join(METHODS)}")
    return classes[name](model)


def signed_image(attribution: torch.Tensor, space: PixelSpace | None = None) -> np.ndarray:
    """A projection (C, H, W) as HxWx3 uint8 RGB, zero at mid-grey and the largest magnitude at 0 or 255."""
    a = attribution.detach().float().cpu()
    if space is not None and space.channel_order == "BGR":
        a = a.flip(0)
    if a.shape[0] == 1:
        a = a.expand(3, -1, -1)
    peak = a.abs().max()
    scaled = a / (2 * peak) + 0.5 if peak > 0 else torch.full_like(a, 0.5)
    return (scaled.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def saliency_map(attribution: torch.Tensor) -> np.ndarray:
    """Simonyan's map: the maximum over channels of |attribution|, scaled to 0..255 (HxW uint8)."""
    m = attribution.detach().float().cpu().abs().amax(dim=0)
    peak = m.max()
    m = m / peak if peak > 0 else m
    return (m.numpy() * 255 + 0.5).astype(np.uint8)
