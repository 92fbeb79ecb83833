"""Two-neuron balance on the CIFAR-10 world: all 45 pairs of output units, with and without the penalty.

For each gamma, every pair A+B of cifar-caffenet's 10 output units is synthesised through the shipped
prior (act_max dynamics, 3-sigma bounds), next to each unit alone. Printed per gamma:
- the median imbalance |a - b| / max(a, b) over the pairs (goal with gamma > 0: below 0.1);
- the share of pairs in which each unit keeps at least half of its single-unit activation;
- the share dominated by one unit (the weaker below half the stronger).

    python eval/pair_balance.py [--gammas 0,0.5,1] [--steps 200] [--restarts 1]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from dgn import weights
from dgn.models import load_classifier, load_generator
from dgn.synthesis import DGNAM, ActMaxSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gammas", default="0,0.5,1")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    gen, clf = load_generator("cifar-deepsim-fc6"), load_classifier("cifar-caffenet")
    bounds = weights.load_bounds("cifar-fc6-bounds-3x")
    singles = [f"fc8:{i}" for i in range(10)]
    pairs = [f"{a}+{b}" for a, b in itertools.combinations(singles, 2)]
    print(f"{'gamma':>6} {'median |a-b|/max':>17} {'both keep >= 1/2':>17} {'dominated':>10} {'time s':>7}")
    for gamma in (float(g) for g in args.gammas.split(",")):
        start = time.time()
        dgnam = DGNAM(gen, clf, ActMaxSettings(steps=args.steps, pair_gamma=gamma), args.device)
        result = dgnam.synthesize(singles + pairs, args.restarts, 0, batch_size=128, upper_bound=bounds)
        alone = {(r.label, r.restart): float(result.act_end[i]) for i, r in enumerate(result.rows) if r.partner is None}
        imbalance, keeps, dominated = [], [], []
        for i, row in enumerate(result.rows):
            if row.partner is None:
                continue
            a, b = (float(v) for v in result.pair_end[i])
            imbalance.append(abs(a - b) / max(abs(a), abs(b), 1e-9))
            ref_a, ref_b = alone[(str(row.target), row.restart)], alone[(str(row.partner), row.restart)]
            keeps.append(a >= 0.5 * ref_a and b >= 0.5 * ref_b)
            dominated.append(min(a, b) < 0.5 * max(a, b))
        print(f"{gamma:>6.2f} {statistics.median(imbalance):>17.3f} {sum(keeps) / len(keeps):>17.0%} "
              f"{sum(dominated) / len(dominated):>10.0%} {time.time() - start:>7.1f}")


if __name__ == "__main__":
    main()
