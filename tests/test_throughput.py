"""FLOPs of a step, peak-rate lookup, batch size from memory, channels-last."""

from __future__ import annotations

import pytest
import torch

from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.throughput import (
    CPU_DEFAULT_BATCH,
    choose_batch_size,
    cpu_peak,
    peak_flops,
    step_flops,
    use_channels_last,
)
from tests.tiny import tiny_pair


def _linear_world():
    """G: Linear(4 -> 3*2*2) reshaped to an image; C: flatten + Linear(12 -> 5) named fc8 (hand-countable)."""
    from dgn import spaces
    from dgn.models import Classifier, Generator

    g = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.Unflatten(1, (3, 2, 2)))
    c = torch.nn.Sequential()
    c.add_module("flat", torch.nn.Flatten())
    c.add_module("fc8", torch.nn.Linear(12, 5))
    space = spaces.RGB01.with_size((2, 2))
    return Generator(g, space, (4,), "linear-g"), Classifier(c, space, "linear-c")


def test_step_flops_counts_forward_and_backward_to_the_code():
    gen, clf = _linear_world()
    dgnam = DGNAM(gen, clf, ActMaxSettings(fit_mode="resize"), "cpu")
    # per row: forward 2*4*12 + 2*12*5 multiply-adds; the backward to the code needs only the input
    # gradients (the same count again): autograd.grad skips the weight gradients nobody asked for
    forward = 2 * 4 * 12 + 2 * 12 * 5
    assert step_flops(dgnam, "fc8:1", batch=3) == 2 * forward


ZEN3 = "vendor_id\t: AuthenticAMD\ncpu MHz\t\t: 2445.424\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n"
SAPPHIRE = "vendor_id\t: GenuineIntel\ncpu MHz\t\t: 2000.000\nflags\t\t: avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_peak_from_what_the_machine_says():
    zen3 = cpu_peak(ZEN3, max_khz="", capability="AVX2", cores=2)
    # 2 cores x 2.445 GHz x (2 FMA x 8 fp32 lanes x 2): 156.5 GFLOP/s; no native bf16: the fp32 rate at best
    assert zen3.flops("fp32") == pytest.approx(2 * 2.445424e9 * 32)
    assert zen3.flops("bf16") == zen3.flops("fp32") and not zen3.native_bf16
    assert "a guess" in zen3.sources["clock"]
    spr = cpu_peak(SAPPHIRE, max_khz="3800000", capability="AVX512", cores=4)
    assert spr.flops("fp32") == pytest.approx(4 * 3.8e9 * 64) and spr.flops("bf16") == pytest.approx(4 * 3.8e9 * 1024)
    assert spr.sources["clock"].startswith("cpufreq") and "AMX" in spr.describe("bf16")
    no_amx = cpu_peak(SAPPHIRE.replace(" amx_bf16 amx_tile", ""), max_khz="3800000", capability="AVX512", cores=1)
    assert no_amx.flops("bf16") == 2 * no_amx.flops("fp32")
    assert cpu_peak("flags\t: sse2\n", max_khz="", capability="DEFAULT", cores=1).flops("fp32") is None  # no clock
    assert peak_flops(torch.device("cpu"), "fp32") == cpu_peak().flops("fp32")


def test_batch_size_from_measured_memory():
    gen, clf = tiny_pair()
    dgnam = DGNAM(gen, clf, ActMaxSettings(), "cpu")
    assert choose_batch_size(dgnam, "fc8:0") == CPU_DEFAULT_BATCH
    # 1 row: 300 MB, 2 rows: 400 MB -> 100 MB per row, 200 MB fixed; 80% of 10 GB free -> (8000-200)/100 rows
    mb = 10**6
    rows = choose_batch_size(dgnam, "fc8:0", free_memory=lambda: 10_000 * mb,
                             step_memory=lambda n: 200 * mb + 100 * mb * n)
    assert rows == 78
    assert choose_batch_size(dgnam, "fc8:0", limit=50, free_memory=lambda: 10_000 * mb,
                             step_memory=lambda n: 200 * mb + 100 * mb * n) == 50


def test_channels_last_gives_the_same_step(one_thread):
    gen, clf = tiny_pair()
    plain = DGNAM(gen, clf, ActMaxSettings(steps=3), "cpu").optimise(
        DGNAM(gen, clf).plan(["fc8:1", "fc8:2"]), upper_bound=5.0)
    gen2, clf2 = tiny_pair()
    fast = use_channels_last(DGNAM(gen2, clf2, ActMaxSettings(steps=3), "cpu"))
    result = fast.optimise(fast.plan(["fc8:1", "fc8:2"]), upper_bound=5.0)
    assert torch.allclose(result.act_end, plain.act_end, rtol=1e-4, atol=1e-4)


def test_bf16_on_a_cpu_without_it_is_named_before_the_run(monkeypatch, tmp_path, capsys):
    from dgn import throughput
    from dgn.cli import main

    monkeypatch.setattr(throughput, "bf16_is_native", lambda: False)
    assert "use --precision fp32" in throughput.bf16_warning("cpu")
    main(["synthesize", "--random-weights", "--target", "fc8:1", "--steps", "1", "--precision", "bf16",
          "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert err.count("dgn: warning: this CPU has no native bf16") == 1
    monkeypatch.setattr(throughput, "bf16_is_native", lambda: True)
    assert throughput.bf16_warning("cpu") is None
