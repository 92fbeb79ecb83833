"""``dgn pair``: two-neuron art, a grid of single units and pairs."""

from __future__ import annotations

import argparse

from dgn.cli.common import add_model_options, add_synthesis_options
from dgn.cli.synthesize import run_synthesis
from dgn.errors import DGNError

HELP = "two-neuron art: maximise two units at once with a balance penalty"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    add_synthesis_options(p)
    p.add_argument("--with", dest="partners", action="append", default=[], metavar="LAYER:UNIT",
                   help="partner unit of --target; repeatable (one pair per partner)")
    p.add_argument("--gamma", type=float, default=1.0, help="balance penalty weight on |a - b| (default 1)")
    p.add_argument("--code-penalty", type=float, default=0.0, help="weight of ||code|| (eq. 2's lambda; default 0)")
    p.add_argument("--balance-width", type=float, default=0.0, metavar="DELTA",
                   help="smooth the balance penalty: sqrt((a-b)^2 + DELTA^2) - DELTA instead of |a-b| (default 0: eq. 2)")


def run(args: argparse.Namespace) -> int:
    """Two-neuron art: A alone, each partner alone, and A+partner with the balance penalty, as one grid."""
    from dgn.pairs import finish_pair_run, pair_plan

    anchor = args.target[0]
    if len(args.target) != 1 or "+" in anchor:
        raise DGNError("dgn pair takes one --target (the anchor) and its partners with --with")
    if not args.partners:
        raise DGNError("give at least one partner unit with --with, e.g. --with fc8:3")
    singles, pairs = pair_plan(anchor, args.partners)
    manifest = run_synthesis(args, singles + pairs, args.gamma, args.code_penalty, args.balance_width)
    if manifest is None:  # a rank other than 0 of a torchrun run: rank 0 draws the grid
        return 0
    paired = finish_pair_run(args.out, manifest, anchor, args.restarts)
    print(f"{'pair':<24} {'restart':>7} {'act a':>8} {'act b':>8} {'alone a':>8} {'alone b':>8}")
    for r in paired:
        print(f"{r['target']:<24} {r['restart']:>7} {r['act_a']:>8.2f} {r['act_b']:>8.2f} "
              f"{r['single_a']:>8.2f} {r['single_b']:>8.2f}")
    print(f"wrote pairs.png (top: single units; below: pairs, both activations under each) to {args.out}")
    return 0
