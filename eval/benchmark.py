"""Throughput of DGN-AM: image-steps per second of the fc6 prior + a classifier, by batch size.

An image-step is one row advanced by one act_max step (generator forward + classifier forward to
the deepest target + one backward to the code). Random weights: speed does not depend on them.

    python eval/benchmark.py                       # CPU: batch 1 vs 16, and the truncated-forward saving
    python eval/benchmark.py --device cuda         # also bf16 and fp32 on a GPU
"""

from __future__ import annotations

import argparse
import time

import torch

from dgn.models import load_classifier, load_generator
from dgn.synthesis import DGNAM, ActMaxSettings


def image_steps_per_second(dgnam: DGNAM, targets: list[str], batch: int, steps: int, warmup: int = 1) -> float:
    rows = dgnam.plan(targets * ((batch + len(targets) - 1) // len(targets)))[:batch]
    dgnam.optimise(rows[:batch], upper_bound=12.0) if warmup else None
    sync = torch.cuda.synchronize if dgnam.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    DGNAM.optimise(_with_steps(dgnam, steps), rows, upper_bound=12.0)
    sync()
    return batch * steps / (time.perf_counter() - start)


def _with_steps(dgnam: DGNAM, steps: int) -> DGNAM:
    from dataclasses import replace

    dgnam.settings = replace(dgnam.settings, steps=steps)
    return dgnam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classifier", default="caffenet")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = load_generator("deepsim-fc6", random_weights=True)
    clf = load_classifier(args.classifier, random_weights=True)
    batches = [int(b) for b in args.batches.split(",")]
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" else [])
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"fc6 prior + {args.classifier}, {args.steps} timed steps")
    for precision in precisions:
        dgnam = DGNAM(gen, clf, ActMaxSettings(steps=1, precision=precision), device)
        rates = {b: image_steps_per_second(dgnam, ["fc8:1"], b, args.steps) for b in batches}
        cells = "  ".join(f"batch {b}: {r:8.1f} image-steps/s" for b, r in rates.items())
        ratio = rates[batches[-1]] / rates[batches[0]]
        print(f"{precision:5s} {cells}  ratio {batches[-1]}/{batches[0]}: {ratio:.2f}x")
        if device.type == "cuda":
            per_1000 = 1000 * 200 / rates[batches[-1]]
            print(f"      all 1000 output units x 200 steps at batch {batches[-1]}: {per_1000:.1f} s")
    b = batches[-1]
    full = DGNAM(gen, clf, ActMaxSettings(steps=1, stop_early=False), device)
    early = DGNAM(gen, clf, ActMaxSettings(steps=1, stop_early=True), device)
    for target in ("conv3:5", "conv5:5", "fc8:5"):
        r_full = image_steps_per_second(full, [target], b, args.steps)
        r_early = image_steps_per_second(early, [target], b, args.steps)
        print(f"target {target:8s} batch {b}: full forward {r_full:7.1f}, stopped at target {r_early:7.1f} "
              f"image-steps/s ({r_early / r_full:.2f}x)")


if __name__ == "__main__":
    main()
