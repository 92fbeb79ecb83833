"""Images as codes: the search spaces of an encoder (pixels, or a layer pre/post ReLU) and the codes of images in them.

Shared by the memorisation audit, neighbours, invariance and real-image starts of a generator prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dgn import spaces
from dgn.errors import DGNError
from dgn.layers import aliases_for, forward_to, resolve_layer
from dgn.models import Classifier, input_shape

PIXEL = "pixel"


@dataclass(frozen=True)
class Space:
    """One search space: ``pixel`` or an encoder layer (canonical module name), pre or post ReLU."""

    name: str
    module: str | None = None
    post_relu: bool = False


def _execution_order(classifier: Classifier) -> list[tuple[str, nn.Module]]:
    """Leaf modules in the order one forward pass runs them."""
    order: list[tuple[str, nn.Module]] = []
    handles = []
    for name, module in classifier.module.named_modules():
        if name and not list(module.children()):
            handles.append(module.register_forward_hook(lambda m, i, o, n=name: order.append((n, m))))
    device = next(iter(classifier.module.parameters()), torch.zeros(())).device
    try:
        with torch.no_grad():
            classifier.module(torch.zeros(1, *input_shape(classifier), device=device))
    finally:
        for h in handles:
            h.remove()
    return order


def resolve_spaces(classifier: Classifier, layers: Sequence[str] | None = None) -> list[Space]:
    """The search spaces for ``layers``.

    Args:
        classifier: the encoder.
        layers: names (``pixel``, dotted module names or aliases such as ``conv1``), each optionally
            suffixed ``:pre`` or ``:post``. Without a suffix a layer is taken post-ReLU when the next
            module run is an ``nn.ReLU`` (as Caffe stores it). Default: ``pixel`` plus every
            Conv2d/Linear layer in execution order.

    Returns:
        One :class:`Space` per name.
    """
    order = _execution_order(classifier)
    follows_relu = {
        name: i + 1 < len(order) and isinstance(order[i + 1][1], nn.ReLU) for i, (name, _) in enumerate(order)
    }
    reverse = {v: k for k, v in aliases_for(classifier.module).items()}
    if layers is None:
        layers = [PIXEL] + [reverse.get(n, n) for n, m in order if isinstance(m, (nn.Conv2d, nn.Linear))]
        layers = list(dict.fromkeys(layers))
    result: list[Space] = []
    for spec in layers:
        name, _, mode = spec.partition(":")
        if mode not in ("", "pre", "post"):
            raise DGNError(f"layer {spec!r}: the suffix must be :pre or :post")
        if name == PIXEL:
            result.append(Space(PIXEL))
            continue
        module = resolve_layer(classifier.module, name)
        post = follows_relu.get(module, False) if mode == "" else mode == "post"
        result.append(Space(spec if mode else name, module, post))
    if len({s.name for s in result}) != len(result):
        raise DGNError(f"duplicate layers in {', '.join(layers)}")
    return result


@torch.no_grad()
def encode(
    classifier: Classifier, images: torch.Tensor, spaces_: Sequence[Space], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Flattened codes of RGB 0..1 images in every space (float32, on the CPU).

    Args:
        classifier: the encoder (evaluated in eval mode on its own device).
        images: (N, 3, H, W) RGB 0..1.
        spaces_: the spaces (see :func:`resolve_spaces`).
        batch_size: images per forward pass.

    Returns:
        Space name -> (N, d) array.
    """
    module = classifier.module
    was_training = module.training
    module.eval()
    device = next(iter(module.parameters()), torch.zeros(())).device
    size = classifier.space.size
    modules = list(dict.fromkeys(s.module for s in spaces_ if s.module is not None))
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in spaces_}
    try:
        for start in range(0, len(images), batch_size):
            rgb = spaces.fit(images[start : start + batch_size].float(), size)
            if any(s.name == PIXEL for s in spaces_):
                parts[PIXEL].append(rgb.reshape(len(rgb), -1).cpu().numpy())
            if modules:
                x = spaces.convert(rgb.to(device), spaces.RGB01, classifier.space)
                out = forward_to(module, x, modules)
                for s in spaces_:
                    if s.module is not None:
                        value = torch.relu(out[s.module]) if s.post_relu else out[s.module]
                        parts[s.name].append(value.reshape(len(value), -1).float().cpu().numpy())
    finally:
        module.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in parts.items()}
