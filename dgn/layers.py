"""Layer addressing: names, aliases, hooks, and a forward pass stopped at the deepest target.

Canonical names are ``named_modules()`` dotted names. Known architectures also get Caffe-style
aliases (conv1 ... fc8). A hooked output is captured *as the module returned it*: the hook hands
the rest of the network a copy, so an in-place ReLU that follows (``nn.ReLU(inplace=True)`` or
``F.relu(x, inplace=True)``) changes the copy, not the captured value. The objective is therefore
the pre-ReLU output, as in the original act_max; post-ReLU is an explicit choice of the caller.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from dgn.errors import DGNError

# Caffe-style aliases for known architectures, keyed by the class name of the model.
ALIASES: dict[str, dict[str, str]] = {
    "AlexNet": {  # torchvision
        "conv1": "features.0",
        "conv2": "features.3",
        "conv3": "features.6",
        "conv4": "features.8",
        "conv5": "features.10",
        "pool5": "features.12",
        "fc6": "classifier.1",
        "fc7": "classifier.4",
        "fc8": "classifier.6",
    },
    "VGG": {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"},
    "ResNet": {"fc": "fc", "fc1000": "fc"},
    "GoogLeNet": {"loss3/classifier": "fc", "fc": "fc"},
}


def aliases_for(model: nn.Module) -> dict[str, str]:
    """Alias -> canonical dotted name for this model (empty for unknown architectures)."""
    own = getattr(model, "layer_aliases", None)
    if isinstance(own, dict):
        return dict(own)
    return dict(ALIASES.get(type(model).__name__, {}))


def resolve_layer(model: nn.Module, name: str) -> str:
    """The canonical dotted name of ``name`` (a dotted name or an alias).

    Raises:
        DGNError: unknown layer, naming the closest valid names.
    """
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return name
    aliases = aliases_for(model)
    if name in aliases and aliases[name] in modules:
        return aliases[name]
    valid = [n for n in modules if n] + list(aliases)
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise DGNError(f"unknown layer {name!r}{hint} (run `dgn layers MODEL` to list them)")


class _StopForward(Exception):
    """Raised inside a hook once every requested layer has been captured."""


@contextmanager
def capture(model: nn.Module, layers: Sequence[str], stop_early: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` (canonical names) during forward passes run inside the block.

    Use :func:`forward_to` for the common case. Hooks are registered only on the requested modules
    and always removed on exit. With ``stop_early`` the forward pass is aborted as soon as every
    requested layer has produced its output, so layers after the deepest target cost nothing.
    """
    modules = dict(model.named_modules())
    wanted = list(dict.fromkeys(layers))
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise DGNError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer")
            store[name] = output
            if stop_early and all(n in store for n in wanted):
                raise _StopForward
            # Hand the rest of the network a copy, so an in-place op downstream cannot change `output`.
            return output.clone()

        return hook

    try:
        for name in wanted:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def forward_to(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], stop_early: bool = True
) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` and return the outputs of ``layers`` (canonical names), pre any following ReLU.

    Raises:
        DGNError: a requested layer did not run during the forward pass.
    """
    with capture(model, layers, stop_early) as store:
        try:
            model(x)
        except _StopForward:
            pass
    missing = [n for n in layers if n not in store]
    if missing:
        raise DGNError(f"layer(s) {', '.join(missing)} did not run in the forward pass; choose layers the model uses")
    return {name: store[name] for name in layers}


def layer_table(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """Every leaf-or-named module that runs on an input of ``input_shape`` (C, H, W), in execution order.

    Returns:
        Rows with ``name``, ``alias`` (or ""), ``type`` and output ``shape`` (without the batch dimension).
    """
    rows: list[dict] = []
    reverse_alias = {v: k for k, v in aliases_for(model).items()}
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            rows.append({"name": name, "alias": reverse_alias.get(name, ""), "type": type(module).__name__, "shape": shape})

        return hook

    was_training = model.training
    model.eval()
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return rows


def hooks_left(model: nn.Module) -> int:
    """How many forward hooks are registered on the model's modules (for tests and sanity checks)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
