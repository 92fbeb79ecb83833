"""Throughput of DGN-AM: image-steps per second of the fc6 prior + a classifier, by batch size.

An image-step is one row advanced by one full act_max step (generator forward + classifier forward to
the deepest target + one backward to the code + the update). Random weights: speed does not depend on them.
Configurations are measured in interleaved rounds and the best round of each is reported
(like timeit), so a burst of other work on the machine does not decide a ratio.

    python eval/benchmark.py                       # CPU: batch 1 vs 16, and the truncated-forward saving
    python eval/benchmark.py --device cuda         # also bf16 on a GPU
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from dgn.models import load_classifier, load_generator
from dgn.synthesis import DGNAM, ActMaxSettings


def _time(dgnam: DGNAM, rows: list, steps: int) -> float:
    dgnam.settings = replace(dgnam.settings, steps=steps)
    sync = torch.cuda.synchronize if dgnam.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    dgnam.optimise(rows, upper_bound=12.0)
    sync()
    return time.perf_counter() - start


def timed_rate(dgnam: DGNAM, target: str, batch: int, steps: int) -> float:
    """Image-steps per second of full act_max steps (forward + backward + update) on ``batch`` rows.

    A run of ``1 + steps`` steps minus a run of 1 step: that removes set-up and the final iterate's
    evaluation (forward only), which are paid once per run, not per step.
    """
    rows = dgnam.plan([target] * batch)
    return batch * steps / max(_time(dgnam, rows, 1 + steps) - _time(dgnam, rows, 1), 1e-9)


def best_of_rounds(configs: dict[str, tuple[DGNAM, str, int]], steps: int, rounds: int) -> dict[str, float]:
    """Measure every configuration once per round, interleaved; keep each one's best round."""
    for dgnam, target, batch in configs.values():  # warm-up: allocator, oneDNN/cuDNN kernel choice
        timed_rate(dgnam, target, batch, 1)
    best = {name: 0.0 for name in configs}
    for _ in range(rounds):
        for name, (dgnam, target, batch) in configs.items():
            best[name] = max(best[name], timed_rate(dgnam, target, batch, steps))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classifier", default="caffenet")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = load_generator("deepsim-fc6", random_weights=True)
    clf = load_classifier(args.classifier, random_weights=True)
    small, large = (int(b) for b in args.batches.split(","))
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"fc6 prior + {args.classifier}; best of {args.rounds} interleaved rounds of {args.steps} steps")

    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" else [])
    configs = {}
    for precision in precisions:
        dgnam = DGNAM(gen, clf, ActMaxSettings(precision=precision), device)
        configs[f"{precision} b{small}"] = (dgnam, "fc8:1", small)
        configs[f"{precision} b{large}"] = (dgnam, "fc8:1", large)
    full = DGNAM(gen, clf, ActMaxSettings(stop_early=False), device)
    early = DGNAM(gen, clf, ActMaxSettings(stop_early=True), device)
    hidden = ("conv3:5", "conv5:5")
    for target in hidden:
        configs[f"full {target}"] = (full, target, large)
        configs[f"early {target}"] = (early, target, large)
    rate = best_of_rounds(configs, args.steps, args.rounds)

    for precision in precisions:
        r1, r2 = rate[f"{precision} b{small}"], rate[f"{precision} b{large}"]
        print(f"{precision:5s} batch {small}: {r1:8.1f} image-steps/s   batch {large}: {r2:8.1f} image-steps/s   "
              f"ratio {r2 / r1:.2f}x")
        if device.type == "cuda":
            print(f"      all 1000 output units x 200 steps at batch {large}: {1000 * 200 / r2:.1f} s")
    for target in hidden:
        r_full, r_early = rate[f"full {target}"], rate[f"early {target}"]
        print(f"target {target:8s} batch {large}: full forward {r_full:7.1f}, stopped after the target "
              f"{r_early:7.1f} image-steps/s ({r_early / r_full:.2f}x)")


if __name__ == "__main__":
    main()
