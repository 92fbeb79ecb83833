"""Two-neuron balance on the CIFAR-10 world: all 45 pairs of output units, with and without the penalty.

For each (gamma, width) setting, every pair A+B of cifar-caffenet's 10 output units is synthesised through
the shipped prior (act_max dynamics, 3-sigma bounds), next to each unit alone. ``width`` is the smoothing
delta of the balance penalty (``--balance-width``; 0 = eq. 2's |a - b|). With ``--restarts R`` each pair
and each single unit keeps the restart with the highest value of its own objective (never chosen by the
balance figures). Printed per setting:
- the median imbalance |a - b| / max(a, b) over the pairs (goal with gamma > 0: below 0.1);
- the share of pairs in which each unit keeps at least half of its single-unit activation;
- the share dominated by one unit (the weaker below half the stronger);
- the median over pairs of min(a / alone_a, b / alone_b), the weaker unit's share of its solo activation.

    python eval/pair_balance.py [--settings 0:0,1:0,1:5] [--steps 200] [--restarts 1] [--bounds NAME]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from dgn import weights
from dgn.models import load_classifier, load_generator
from dgn.synthesis import DGNAM, ActMaxSettings


def best_restarts(result) -> dict[str, int]:
    """Per target (single or pair), the row index of the restart with the highest final objective."""
    best: dict[str, int] = {}
    for i, row in enumerate(result.rows):
        if row.label not in best or result.act_end[i] > result.act_end[best[row.label]]:
            best[row.label] = i
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="0:0,0.5:0,1:0,1:5,1:10",
                        help="comma-separated gamma:width pairs (width = --balance-width)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--bounds", default="cifar-fc6-bounds-3x")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen, clf = load_generator("cifar-deepsim-fc6"), load_classifier("cifar-caffenet")
    bounds = weights.load_bounds(args.bounds)
    singles = [f"fc8:{i}" for i in range(10)]
    pairs = [f"{a}+{b}" for a, b in itertools.combinations(singles, 2)]
    print(f"45 pairs of cifar-caffenet output units, {args.steps} steps, best of {args.restarts} restart(s), "
          f"bounds {args.bounds}")
    print(f"{'gamma':>6} {'width':>6} {'median |a-b|/max':>17} {'both keep >= 1/2':>17} {'dominated':>10} "
          f"{'weaker / alone':>15} {'time s':>7}")
    for item in args.settings.split(","):
        gamma, width = (float(v) for v in item.split(":"))
        start = time.time()
        dgnam = DGNAM(gen, clf, ActMaxSettings(steps=args.steps, pair_gamma=gamma, pair_smoothing=width), args.device)
        result = dgnam.synthesize(singles + pairs, args.restarts, 0, batch_size=128, upper_bound=bounds)
        best = best_restarts(result)
        alone = {label: float(result.act_end[best[label]]) for label in singles}
        imbalance, keeps, dominated, weaker = [], [], [], []
        for label in pairs:
            first, second = label.split("+")
            a, b = (float(v) for v in result.pair_end[best[label]])
            imbalance.append(abs(a - b) / max(abs(a), abs(b), 1e-9))
            keeps.append(a >= 0.5 * alone[first] and b >= 0.5 * alone[second])
            dominated.append(min(a, b) < 0.5 * max(a, b))
            weaker.append(min(a / alone[first], b / alone[second]))
        print(f"{gamma:>6.2f} {width:>6.1f} {statistics.median(imbalance):>17.3f} {sum(keeps) / len(keeps):>17.0%} "
              f"{sum(dominated) / len(dominated):>10.0%} {statistics.median(weaker):>15.2f} {time.time() - start:>7.1f}",
              flush=True)


if __name__ == "__main__":
    main()
