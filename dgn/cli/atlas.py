"""``dgn atlas``: a static website of a network's units (preferred images, dataset examples, histograms)."""

from __future__ import annotations

import argparse

from dgn.cli.common import progress_bar

HELP = "a browsable unit atlas (static site, opens from disk) from runs, dataset examples, pairs and audits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", default=[], metavar="DIR",
                   help="run folders (dgn synthesize, baseline, evolve or demo) whose unit images to show")
    p.add_argument("--topk", default=None, metavar="DIR", help="a dgn topk output folder: examples and histograms")
    p.add_argument("--pairs", nargs="+", default=[], metavar="DIR", help="dgn pair runs to show on their units' pages")
    p.add_argument("--audit", nargs="+", default=[], metavar="DIR", help="dgn audit outputs whose verdicts to show")
    p.add_argument("--title", default=None, help="site title (default: Atlas of <classifier>)")
    p.add_argument("--page-size", type=int, default=100, help="units per page of a layer's grid (default 100)")
    p.add_argument("--out", required=True, help="site folder (replaces an atlas already there)")


def run(args: argparse.Namespace) -> int:
    from dgn.atlas import build_atlas

    with progress_bar(0, "atlas (unit pages)") as progress:
        summary = build_atlas(args.out, args.runs, args.topk, args.pairs, args.audit, args.title, args.page_size,
                              progress)
    print(f"atlas of {summary['units']} units in {summary['layers']} layers, {summary['images']} images, "
          f"{summary['bytes'] / 1e6:.1f} MB, built in {summary['seconds']:.1f} s; open {summary['index']}")
    return 0
