"""FLOPs of a step, peak-rate lookup, batch size from memory, channels-last."""

from __future__ import annotations

import torch

from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.throughput import CPU_DEFAULT_BATCH, choose_batch_size, peak_flops, step_flops, use_channels_last
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


def test_peak_is_unknown_on_a_cpu():
    assert peak_flops(torch.device("cpu"), "bf16") is None


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
