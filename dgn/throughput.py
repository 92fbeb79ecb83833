"""Throughput helpers: FLOPs of an act_max step, the device's peak rate, and a batch size that fits.

Used by ``eval/benchmark.py`` (percentage of peak) and by ``--batch-size auto`` (rows per chunk chosen
from the free GPU memory).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from dgn.engine import autocast_for
from dgn.layers import forward_to
from dgn.params import initial_codes
from dgn.synthesis import DGNAM

# Dense peak rates in TFLOP/s from the vendors' data sheets (SXM parts; no sparsity).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "A10G": {"bf16": 70.0, "fp32": 31.2},
    "V100": {"bf16": 0.0, "fp32": 15.7},
}

CPU_DEFAULT_BATCH = 16


def step_flops(dgnam: DGNAM, target: str, batch: int = 1) -> float:
    """FLOPs per row of one full act_max step on ``target``: G forward, classifier forward to the target,
    and the backward pass to the code (counted by ``torch.utils.flop_counter``; matmuls and convolutions)."""
    rows = dgnam.plan([target] * batch)
    objective = dgnam.objective(rows)
    code = initial_codes([r.seed for r in rows], dgnam.generator.code_shape).to(dgnam.device).requires_grad_(True)
    # act_max asks autograd for the code's gradient only; the counter cannot watch autograd.grad, so
    # freeze the weights and call backward, which then computes exactly the same gradients
    params = [p for m in (dgnam.generator.module, dgnam.classifier.module) for p in m.parameters()]
    wanted = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with FlopCounterMode(display=False) as counter:
            with autocast_for(dgnam.device, dgnam.settings.precision):
                image = dgnam.image_for_classifier(code)
                values = objective(forward_to(dgnam.classifier.module, image, objective.layers, True), code)
            values.sum().backward()
    finally:
        for p, w in zip(params, wanted):
            p.requires_grad_(w)
    return counter.get_total_flops() / batch


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak FLOP/s for ``precision`` ("bf16" or "fp32"), or None when unknown (e.g. CPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for model, rates in PEAK_TFLOPS.items():
        if model in name and rates.get(precision):
            return rates[precision] * 1e12
    return None


def _cuda_step_memory(dgnam: DGNAM, target: str, rows: int) -> int:
    """Peak bytes allocated by one act_max step on ``rows`` rows (CUDA)."""
    from dataclasses import replace

    saved = dgnam.settings
    dgnam.settings = replace(saved, steps=2)
    try:
        torch.cuda.synchronize(dgnam.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dgnam.device)
        base = torch.cuda.memory_allocated(dgnam.device)
        dgnam.optimise(dgnam.plan([target] * rows))
        torch.cuda.synchronize(dgnam.device)
        return torch.cuda.max_memory_allocated(dgnam.device) - base
    finally:
        dgnam.settings = saved


def choose_batch_size(
    dgnam: DGNAM,
    target: str,
    headroom: float = 0.8,
    limit: int = 4096,
    free_memory: Callable[[], int] | None = None,
    step_memory: Callable[[int], int] | None = None,
) -> int:
    """Rows per chunk that fit in ``headroom`` of the free GPU memory (``CPU_DEFAULT_BATCH`` on a CPU).

    Memory is measured, not guessed: one step at 1 and at 2 rows gives the fixed and the per-row cost.

    Args:
        dgnam: the configured method (its device, models and precision).
        target: a representative target (the deepest layer a run uses costs the most).
        headroom: fraction of the free memory to fill.
        limit: the largest batch to return.
        free_memory: bytes free (default: ``torch.cuda.mem_get_info``); for tests.
        step_memory: peak bytes of a step on n rows (default: measured on the GPU); for tests.
    """
    if dgnam.device.type != "cuda" and (free_memory is None or step_memory is None):
        return CPU_DEFAULT_BATCH
    free = free_memory() if free_memory is not None else torch.cuda.mem_get_info(dgnam.device)[0]
    measure = step_memory or (lambda n: _cuda_step_memory(dgnam, target, n))
    one, two = measure(1), measure(2)
    per_row = max(two - one, 1)
    fixed = max(one - per_row, 0)
    rows = int((free * headroom - fixed) // per_row)
    return max(1, min(limit, rows))


def use_channels_last(dgnam: DGNAM) -> DGNAM:
    """Store the generator's and classifier's 4-D weights channels-last (faster convolutions on tensor cores)."""
    dgnam.generator.module.to(memory_format=torch.channels_last)
    dgnam.classifier.module.to(memory_format=torch.channels_last)
    return dgnam
