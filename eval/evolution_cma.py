"""Which CMA-ES for generator codes: full covariance vs diagonal, ours vs pycma, scores per evaluation.

On the CIFAR-10 world (``cifar-caffenet`` through ``cifar-deepsim-fc6``, its registered 3-sigma code box,
512-d codes) for a few output units, each optimiser gets the same start (the row's act_max code, clipped into
the box), initial step size (a quarter of the mean upper bound), population (40) and budget; candidates are
clipped into the box before they are scored (the optimiser updates with its own, unclipped draws):

- ours: ``dgn.evolvers.SeparableCMAES`` (diagonal), every unit in one batched run;
- pycma (Hansen's reference ``cma`` package, not a dependency of dgn) with a full covariance, and with
  ``CMA_diagonal=True``, one unit at a time;
- ours: XDream's GA (population 20), for reference.

It prints the best score after 20%, 50% and 100% of the budget (mean over units) and the wall time.
pycma is installed only for this benchmark, e.g.::

    .venv/bin/pip install --target /tmp/cma-lib cma && rm -rf /tmp/cma-lib/numpy*
    PYTHONPATH=/tmp/cma-lib .venv/bin/python eval/evolution_cma.py --units 4 --evaluations 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgn import weights
from dgn.demo import CLASSIFIER, GENERATOR
from dgn.evolve import Evolution, EvolutionSettings
from dgn.evolvers import initial_population
from dgn.models import load_classifier, load_generator


def checkpoints(history: np.ndarray, population: int, budget: int) -> list[float]:
    """Best score so far after 20%, 50% and 100% of ``budget`` images, from per-generation bests."""
    best = np.maximum.accumulate(history)
    return [float(best[max(0, int(budget * f) // population - 1)]) for f in (0.2, 0.5, 1.0)]


def run_pycma(evolution: Evolution, rows, upper: torch.Tensor, budget: int, population: int, diagonal: bool,
              sigma: float) -> list[list[float]]:
    import cma

    out = []
    for row in rows:
        start = np.clip(initial_population([row.seed], 1, (512,))[0, 0].numpy(), 0, upper.numpy())
        options = {"popsize": population, "seed": row.seed + 1, "verbose": -9, "maxfevals": budget,
                   "CMA_diagonal": diagonal, "tolfun": 0, "tolx": 0, "tolflatfitness": 10**9}
        es = cma.CMAEvolutionStrategy(start.astype(np.float64), sigma, options)
        history = []
        for _ in range(budget // population):
            candidates = es.ask()
            codes = torch.from_numpy(np.clip(np.array(candidates), 0, upper.numpy())).float()
            scores = evolution.score(codes[None], [row], "pycma")[0].numpy()
            es.tell(candidates, (-scores).tolist())  # pycma minimises
            history.append(float(scores.max()))
        out.append(checkpoints(np.array(history), population, budget))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=4, help="output units fc8:0..N-1 (default 4)")
    p.add_argument("--evaluations", type=int, default=10_000)
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    generator, classifier = load_generator(GENERATOR), load_classifier(CLASSIFIER)
    upper, label = weights.resolve_bounds(None, GENERATOR, 512)
    targets = [f"fc8:{i}" for i in range(args.units)]
    sigma = 0.25 * float(upper.mean())
    print(f"{len(targets)} output units of {CLASSIFIER} through {GENERATOR} (box {label}, sigma0 {sigma:.2f}), "
          f"{args.evaluations} images each; best score after 20% / 50% / 100% of the budget, mean over units")
    print(f"{'optimiser':<34} {'20%':>7} {'50%':>7} {'100%':>7} {'wall s':>7}")
    lines = []
    for name, settings in (("ours: sep-CMA-ES (diagonal), batched", EvolutionSettings(optimizer="cmaes")),
                           ("ours: GA (XDream), batched", EvolutionSettings(optimizer="ga"))):
        evolution = Evolution(generator, classifier, EvolutionSettings(**{**settings.__dict__,
                                                                          "evaluations": args.evaluations}), "cpu")
        t0 = time.perf_counter()
        result = evolution.evolve(targets, batch_size=len(targets), upper_bound=upper)
        wall = time.perf_counter() - t0
        size = evolution.settings.population_size
        marks = np.mean([checkpoints(h[:, 0].numpy(), size, args.evaluations) for h in result.history], 0)
        lines.append((name, marks, wall))
        print(f"{name:<34} {marks[0]:>7.2f} {marks[1]:>7.2f} {marks[2]:>7.2f} {wall:>7.0f}", flush=True)
    try:
        import cma  # noqa: F401
    except ImportError:
        print("pycma is not importable: see the docstring to install it for this benchmark")
        return
    evolution = Evolution(generator, classifier, EvolutionSettings(optimizer="cmaes"), "cpu")
    rows = evolution.plan(targets)
    for name, diagonal in (("pycma: full covariance, one by one", False), ("pycma: diagonal, one by one", True)):
        t0 = time.perf_counter()
        marks = np.mean(run_pycma(evolution, rows, upper, args.evaluations, 40, diagonal, sigma), 0)
        wall = time.perf_counter() - t0
        print(f"{name:<34} {marks[0]:>7.2f} {marks[1]:>7.2f} {marks[2]:>7.2f} {wall:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
