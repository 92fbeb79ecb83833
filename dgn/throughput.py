"""Throughput helpers: FLOPs of an act_max step, the device's peak rate, and a batch size that fits.

Used by ``eval/benchmark.py`` (percentage of peak) and by ``--batch-size auto`` (rows per chunk chosen
from the free GPU memory). A CPU's peak is worked out from what the machine says of itself
(:func:`cpu_peak`): the cores this process may use, the vector width and bf16 units its flags show, and a
clock; each figure carries where it came from, and which ones are guesses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dgn.engine import autocast_for
from dgn.errors import DGNError
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


@dataclass(frozen=True)
class CpuPeak:
    """A CPU's dense peak rate and where each factor came from.

    fp32: cores x clock x FMA units x (vector bits / 32) x 2. bf16: with AMX, Intel's 1024 bf16 FLOP per cycle
    per core (one TDPBF16PS on full tiles: 16x16x32 multiply-adds every 16 cycles); with AVX512_BF16 only,
    twice the fp32 rate (VDPBF16PS: two products per fp32 lane); with neither, bf16 runs through fp32 at best.
    """

    cores: int
    clock_ghz: float | None
    vector_bits: int
    fma_units: int
    amx: bool
    avx512_bf16: bool
    sources: dict[str, str]

    @property
    def native_bf16(self) -> bool:
        return self.amx or self.avx512_bf16

    def flops_per_cycle(self, precision: str) -> float:
        """Per core."""
        fp32 = self.fma_units * (self.vector_bits // 32) * 2
        if precision != "bf16":
            return fp32
        return 1024.0 if self.amx else (2.0 * fp32 if self.avx512_bf16 else fp32)

    def flops(self, precision: str) -> float | None:
        """FLOP/s, or None when the clock is unknown."""
        if self.clock_ghz is None:
            return None
        return self.cores * self.clock_ghz * 1e9 * self.flops_per_cycle(precision)

    def describe(self, precision: str) -> str:
        """One line: the peak and how it was worked out."""
        total = self.flops(precision)
        head = f"{total / 1e9:.0f} GFLOP/s" if total else "unknown"
        clock = f"{self.clock_ghz:.2f} GHz" if self.clock_ghz else "? GHz"
        unit = ("AMX" if self.amx else "AVX512_BF16" if self.avx512_bf16 else "no native bf16, fp32 units") \
            if precision == "bf16" else f"{self.fma_units} FMA x {self.vector_bits}-bit"
        return (f"{precision} peak {head} = {self.cores} cores x {clock} x {self.flops_per_cycle(precision):.0f} "
                f"FLOP/cycle ({unit}); " + "; ".join(f"{k}: {v}" for k, v in self.sources.items()))


def _cpu_flags(cpuinfo: str) -> set[str]:
    match = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    return set(match[1].split()) if match else set()


def cpu_peak(cpuinfo: str | None = None, max_khz: str | None = None, capability: str | None = None,
             cores: int | None = None) -> CpuPeak:
    """What this CPU can do at most, from ``/proc/cpuinfo``, cpufreq and PyTorch (arguments: for tests).

    Cores: the CPUs this process may run on, capped by torch's thread count. Vector width: AVX-512 where the
    flags show it (on AMD, whose AVX-512 units are 256 bits wide, counted as 256), else AVX2/FMA (256), else
    128. FMA units: 2 per core, a guess (most server cores; some Xeon Silver/Bronze have 1). Clock: cpufreq's
    maximum (boost) if present, else the clock ``/proc/cpuinfo`` reports (under a hypervisor that may be the
    base clock: a guess either way, stated as such).
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    if max_khz is None:
        freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        max_khz = freq.read_text().strip() if freq.is_file() else ""
    capability = capability or torch.backends.cpu.get_cpu_capability()
    flags = _cpu_flags(cpuinfo)
    sources: dict[str, str] = {}
    if cores is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        cores = min(usable, torch.get_num_threads())
        sources["cores"] = f"{cores} (CPUs this process may use: {usable}; torch threads: {torch.get_num_threads()})"
    amd = "AuthenticAMD" in cpuinfo
    if "avx512f" in flags or (not flags and capability.startswith("AVX512")):
        vector = 256 if amd else 512
        sources["vector"] = "AVX-512" + (" (AMD: 256-bit units)" if amd else "")
    elif "avx2" in flags or "fma" in flags or (not flags and capability == "AVX2"):
        vector, sources["vector"] = 256, "AVX2/FMA"
    else:
        vector, sources["vector"] = 128, "128-bit SIMD (no AVX flags seen)"
    sources["fma units"] = "2 per core, a guess"
    clock = None
    if max_khz.isdigit():
        clock, sources["clock"] = int(max_khz) / 1e6, "cpufreq maximum (boost) clock"
    else:
        mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)
        if mhz:
            clock = float(mhz[1]) / 1e3
            sources["clock"] = "/proc/cpuinfo 'cpu MHz', a guess (no cpufreq: boost unknown)"
        else:
            sources["clock"] = "unknown"
    amx = "amx_bf16" in flags
    avx512_bf16 = "avx512_bf16" in flags
    sources["bf16"] = "AMX" if amx else ("AVX512_BF16" if avx512_bf16 else "none native (flags show neither "
                                                                          "amx_bf16 nor avx512_bf16)")
    return CpuPeak(cores, clock, vector, 2, amx, avx512_bf16, sources)


def bf16_is_native() -> bool:
    """Whether oneDNN runs bf16 convolutions and matmuls natively on this CPU (AVX512_BF16 or AMX)."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else cpu_peak().native_bf16
    except RuntimeError:
        return cpu_peak().native_bf16


def bf16_warning(device: str | torch.device | None) -> str | None:
    """What to tell a user who asks for bf16 on a CPU that would emulate it (None when all is well)."""
    from dgn.engine import resolve_device

    try:
        resolved = resolve_device(device)
    except DGNError:  # a bad device is reported by the command itself
        return None
    if resolved.type != "cpu" or bf16_is_native():
        return None
    return ("this CPU has no native bf16 (oneDNN sees neither AVX512_BF16 nor AMX), so --precision bf16 runs "
            "PyTorch's slow reference kernels (a CaffeNet act_max step: about 30x slower than fp32 on an "
            "AMD EPYC with AVX2); use --precision fp32")


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak FLOP/s for ``precision`` ("bf16" or "fp32"), or None when unknown.

    GPUs: the data-sheet figure of a known model; CPUs: :func:`cpu_peak`."""
    if device.type == "cpu":
        return cpu_peak().flops(precision)
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
