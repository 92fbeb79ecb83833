"""Throughput of DGN-AM: image-steps per second of the fc6 prior + a classifier, by batch size.

An image-step is one row advanced by one full act_max step (generator forward + classifier forward to
the deepest target + one backward to the code + the update). Random weights: speed does not depend on them.
Configurations are measured in interleaved rounds and the best round of each is reported
(like timeit), so a burst of other work on the machine does not decide a ratio.

    python eval/benchmark.py                       # CPU: batch 1 vs 16, and the truncated-forward saving
    python eval/benchmark.py --device cuda         # also bf16, channels-last, % of peak, memory, --batch auto
    python eval/benchmark.py --classifier resnet50 # the fc6 prior driving a torchvision ResNet-50

Every run ends with a planning table: the time (and GPU cost) to visualise every unit of CaffeNet and
ResNet-50 on 1, 8 and 64 devices like this one, from the measured rate and the measured FLOPs per step.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from dgn.models import load_classifier, load_generator
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.throughput import choose_batch_size, peak_flops, step_flops, use_channels_last


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


def output_target(module: torch.nn.Module) -> str:
    """Unit 1 of the model's last linear layer (fc8 on CaffeNet, fc on ResNet-50)."""
    from dgn.layers import aliases_for

    last = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    alias = {v: k for k, v in aliases_for(module).items()}.get(last, last)
    return f"{alias}:1"


def unit_count(module: torch.nn.Module) -> int:
    """Units a user could visualise: the output channels of every convolution and linear layer."""
    return sum(m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features
               for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))


def print_plan(rate_by_model: dict[str, tuple[float, float]], restarts: int, steps: int, usd_per_hour: float) -> None:
    """Time and cost to visualise every unit of each model, from measured (image-steps/s, FLOPs per step)."""
    print(f"\nplan: every unit x {restarts} restarts x {steps} steps, at the rate measured here "
          f"(${usd_per_hour:.2f} per device-hour assumed)")
    print(f"{'model':<10} {'units':>7} {'image-steps':>12} {'1 device':>12} {'8 devices':>12} {'64 devices':>12}")
    for name, (rate, _) in rate_by_model.items():
        units = unit_count(load_classifier(name, random_weights=True).module)
        work = units * restarts * steps
        cells = []
        for n in (1, 8, 64):
            hours = work / rate / n / 3600
            cells.append(f"{hours:7.2f} h ${hours * n * usd_per_hour:,.0f}".rjust(12) if hours >= 0.1
                         else f"{hours * 60:6.1f} min".rjust(12))
        print(f"{name:<10} {units:>7,} {work:>12,.0f} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classifier", default="caffenet")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,16", help="small,large; large may be 'auto' (from free memory)")
    parser.add_argument("--usd-per-hour", type=float, default=3.0, help="device-hour price for the plan")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = load_generator("deepsim-fc6", random_weights=True)
    clf = load_classifier(args.classifier, random_weights=True)
    small_text, large_text = args.batches.split(",")
    small = int(small_text)
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"fc6 prior + {args.classifier}; best of {args.rounds} interleaved rounds of {args.steps} steps")

    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" else [])
    out = output_target(clf.module)
    configs, flops = {}, {}
    for precision in precisions:
        dgnam = DGNAM(gen, clf, ActMaxSettings(precision=precision), device)
        large = choose_batch_size(dgnam, out) if large_text == "auto" else int(large_text)
        flops[precision] = step_flops(dgnam, out)
        configs[f"{precision} b{small}"] = (dgnam, out, small)
        configs[f"{precision} b{large}"] = (dgnam, out, large)
        if device.type == "cuda":
            fast = use_channels_last(DGNAM(load_generator("deepsim-fc6", random_weights=True),
                                           load_classifier(args.classifier, random_weights=True),
                                           ActMaxSettings(precision=precision), device))
            configs[f"{precision} b{large} channels-last"] = (fast, out, large)
    full = DGNAM(gen, clf, ActMaxSettings(stop_early=False), device)
    early = DGNAM(gen, clf, ActMaxSettings(stop_early=True), device)
    hidden = ("conv3:5", "conv5:5") if args.classifier == "caffenet" else ("layer2:5", "layer3:5")
    for target in hidden:
        configs[f"full {target}"] = (full, target, large)
        configs[f"early {target}"] = (early, target, large)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rate = best_of_rounds(configs, args.steps, args.rounds)

    for precision in precisions:
        r1, r2 = rate[f"{precision} b{small}"], rate[f"{precision} b{large}"]
        achieved = r2 * flops[precision]
        peak = peak_flops(device, precision)
        share = f", {100 * achieved / peak:.1f}% of peak" if peak else ""
        print(f"{precision:5s} batch {small}: {r1:8.1f} image-steps/s   batch {large}: {r2:8.1f} image-steps/s   "
              f"ratio {r2 / r1:.2f}x   {flops[precision] / 1e9:.2f} GFLOP per image-step, "
              f"{achieved / 1e12:.3f} TFLOP/s{share}")
        if f"{precision} b{large} channels-last" in rate:
            print(f"      channels-last batch {large}: {rate[f'{precision} b{large} channels-last']:8.1f} image-steps/s")
        if device.type == "cuda":
            print(f"      all 1000 output units x 200 steps at batch {large}: {1000 * 200 / r2:.1f} s")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    for target in hidden:
        r_full, r_early = rate[f"full {target}"], rate[f"early {target}"]
        print(f"target {target:8s} batch {large}: full forward {r_full:7.1f}, stopped after the target "
              f"{r_early:7.1f} image-steps/s ({r_early / r_full:.2f}x)")
    best = max(precisions, key=lambda p: rate[f"{p} b{large}"])
    print_plan({args.classifier: (rate[f"{best} b{large}"], flops[best])}, restarts=4, steps=200,
               usd_per_hour=args.usd_per_hour)


if __name__ == "__main__":
    main()
