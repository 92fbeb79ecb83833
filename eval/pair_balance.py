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

``--ceiling`` adds how far a strong optimiser gets on the same pairs, code space and bounds: Adam on the
code (lr 0.1, ``--ceiling-steps``), from ``--restarts`` seeded starts, maximising a soft minimum of
a / alone_a and b / alone_b directly, i.e. the weaker unit's share of its solo activation. It bounds what
any balance penalty can reach with this prior and classifier.

    python eval/pair_balance.py [--settings 0:0,1:0,1:5] [--steps 200] [--restarts 1] [--bounds NAME] [--ceiling]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from dgn import spaces, weights
from dgn.models import load_classifier, load_generator
from dgn.params import initial_codes
from dgn.synthesis import DGNAM, ActMaxSettings


def best_restarts(result) -> dict[str, int]:
    """Per target (single or pair), the row index of the restart with the highest final objective."""
    best: dict[str, int] = {}
    for i, row in enumerate(result.rows):
        if row.label not in best or result.act_end[i] > result.act_end[best[row.label]]:
            best[row.label] = i
    return best


def ceiling(gen, clf, bounds: torch.Tensor, alone: torch.Tensor, restarts: int, steps: int) -> torch.Tensor:
    """Per pair (itertools.combinations order), the best over restarts of min(a / alone_a, b / alone_b)."""
    pairs = list(itertools.combinations(range(len(alone)), 2))
    first = torch.tensor([a for a, _ in pairs for _ in range(restarts)])
    second = torch.tensor([b for _, b in pairs for _ in range(restarts)])
    rows = torch.arange(len(first))
    code = initial_codes(rows.tolist(), gen.code_shape).clamp_min(0).minimum(bounds).requires_grad_(True)
    optimiser = torch.optim.Adam([code], lr=0.1)

    def shares(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = clf.module(spaces.convert(gen(c), gen.space, clf.space))
        return logits[rows, first] / alone[first], logits[rows, second] / alone[second]

    for _ in range(steps):
        a, b = shares(code)
        soft_min = -0.05 * torch.logsumexp(torch.stack([-a / 0.05, -b / 0.05]), 0)
        optimiser.zero_grad()
        (-soft_min.sum()).backward()
        optimiser.step()
        with torch.no_grad():
            code.copy_(code.clamp_min(0).minimum(bounds))
    with torch.no_grad():
        a, b = shares(code)
    return torch.minimum(a, b).view(len(pairs), restarts).max(1).values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="0:0,0.5:0,1:0,1:5,1:10",
                        help="comma-separated gamma:width pairs (width = --balance-width)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--bounds", default="cifar-fc6-bounds-3x")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ceiling", action="store_true", help="also run the strong-optimiser ceiling (see above)")
    parser.add_argument("--ceiling-steps", type=int, default=600)
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
    # Each unit alone, once: single rows do not depend on the pair settings or on their batch-mates.
    solo = DGNAM(gen, clf, ActMaxSettings(steps=args.steps), args.device).synthesize(
        singles, args.restarts, 0, batch_size=128, upper_bound=bounds)
    best_solo = best_restarts(solo)
    alone = {label: float(solo.act_end[best_solo[label]]) for label in singles}
    for item in args.settings.split(","):
        gamma, width = (float(v) for v in item.split(":"))
        start = time.time()
        dgnam = DGNAM(gen, clf, ActMaxSettings(steps=args.steps, pair_gamma=gamma, pair_smoothing=width), args.device)
        result = dgnam.synthesize(pairs, args.restarts, 0, batch_size=128, upper_bound=bounds)
        best = best_restarts(result)
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
    if args.ceiling:
        start = time.time()
        with torch.enable_grad():
            weaker = ceiling(gen, clf, bounds, torch.tensor([alone[label] for label in singles]), args.restarts,
                             args.ceiling_steps)
        print(f"ceiling (Adam, {args.ceiling_steps} steps, best of {args.restarts}): both keep >= 1/2 in "
              f"{float((weaker >= 0.5).float().mean()):.0%} of pairs, median weaker / alone {float(weaker.median()):.2f} "
              f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
