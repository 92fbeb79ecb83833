"""How a method runs a model: on its device, in eval mode, in the memory layout and precision that are fastest there.

bf16 keeps a copy of the model whose convolution and linear weights are stored in bf16, so the autocast of
every step no longer converts them again (CaffeNet and the fc6 prior: 117 M parameters, 77-90 ms of copies
per step on a 2-core CPU, about three quarters of a whole fp32 step at batch 1). The copy takes and returns fp32
tensors and runs under bf16 autocast itself, so codes, gradients and the step arithmetic stay fp32 and the
act_max dynamics are those of autocast; the models passed in keep their fp32 weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils._pytree import tree_map

# The layers whose weights autocast converts to bf16 on every call: store those in bf16 once.
BF16_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
               nn.ConvTranspose3d)


def place(module: nn.Module, device: torch.device, precision: str = "fp32") -> nn.Module:
    """``module`` moved to ``device`` in eval mode (in place, as ``Module.to``), channels-last on a CPU
    (oneDNN's convolutions run 1.15-1.4x faster on NHWC: eval/benchmark.py); for "bf16" a bf16 copy of it
    (:func:`bf16_copy`), the module itself staying fp32."""
    module.to(device).eval()
    if device.type == "cpu":
        module.to(memory_format=torch.channels_last)
    return bf16_copy(module) if precision == "bf16" else module


def bf16_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with its linear and convolution weights in bf16 (other parameters and buffers
    fp32), whose forward runs under bf16 autocast and returns fp32 tensors (inputs are taken as they come:
    autocast converts them). Layer names, hooks and ``forward_to`` work on it as on the original."""
    twin = copy.deepcopy(module)
    for layer in twin.modules():
        if isinstance(layer, BF16_LAYERS):
            layer.to(torch.bfloat16)  # keeps each tensor's memory layout
    fp32_forward = twin.forward

    def forward(*args, **kwargs):
        with torch.autocast(_device_type(twin), dtype=torch.bfloat16):
            out = fp32_forward(*args, **kwargs)
        return tree_map(_to_fp32, out)

    twin.forward = forward  # an instance attribute: nn.Module.__call__ and its hooks use it
    return twin


def _device_type(module: nn.Module) -> str:
    param = next(module.parameters(), None)
    return param.device.type if param is not None else "cpu"


def _to_fp32(value):
    return value.float() if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16 else value
