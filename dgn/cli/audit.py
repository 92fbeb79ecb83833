"""``dgn audit``: the memorisation audit (Figure S22) from the command line (argument parsing only).

``dgn.cli`` wires :func:`add_arguments` and :func:`run` in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dgn.errors import DGNError

HELP = "memorisation audit: nearest training images in pixel and code spaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dgn audit`` options to ``parser``.

    Args:
        parser: the (sub)parser of the ``audit`` command.
    """
    p = parser
    p.add_argument("--synthetic", required=True, help="a dgn run directory (class of a row = its fc8 unit)")
    p.add_argument("--train", required=True, help="training images: ROOT/<class>/<image> (class = sorted folder order)")
    p.add_argument("--heldout", default=None, help="held-out real images, same layout: the per-class distance scale")
    p.add_argument("--classifier", required=True, help="encoder (registry name, e.g. cifar-caffenet)")
    p.add_argument("--layers", default=None,
                   help="comma-separated spaces: pixel and layer names, optional :pre/:post "
                        "(default: pixel + every conv/linear layer, post-ReLU where a ReLU follows)")
    p.add_argument("--k", type=int, default=10, help="FAISS candidates per query, re-ranked exactly (default 10)")
    p.add_argument("--all-classes", action="store_true", help="also search the training images of all classes")
    p.add_argument("--threshold", type=float, default=0.5, help="flag a distance below threshold x scale (default 0.5)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--weights-dir", default=None, help="directory with weights copied by hand (also $DGN_WEIGHTS_DIR)")
    p.add_argument("--out", required=True, help="output directory (audit.json, montage.png)")


def run(args: argparse.Namespace) -> int:
    """Run ``dgn audit`` and print a short summary.

    Args:
        args: parsed options (see :func:`add_arguments`).

    Returns:
        The exit status (0).
    """
    import torch
    from tqdm import tqdm

    from dgn import audit
    from dgn.distributed import init_world
    from dgn.models import load_classifier
    from dgn.training import default_device

    start = time.monotonic()
    world, device_name = init_world(args.device)
    device = default_device() if device_name == "auto" else torch.device(device_name)
    encoder = load_classifier(args.classifier, weights_dir=args.weights_dir).to(device)
    size = encoder.space.size
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    train, classes = audit.ImageSet.from_folder(args.train, size)
    heldout = None
    if args.heldout:
        heldout, held_classes = audit.ImageSet.from_folder(args.heldout, size)
        if held_classes != classes:
            raise DGNError(f"--heldout classes {held_classes} differ from --train classes {classes}")
    synthetic = audit.synthetic_from_run(args.synthetic, size, weights_dir=args.weights_dir)
    auditor = audit.MemorisationAudit(encoder, layers, args.k, args.all_classes, args.threshold, args.batch_size)
    mine = len(sorted(set(train.labels))[world.rank :: world.size])  # classes this rank scans
    with tqdm(total=mine, unit="class", desc="audit", disable=None if world.is_main else True) as bar:
        result = auditor.audit(synthetic, train, heldout, lambda stage, done, total: bar.update(1), world)
    if not world.is_main:  # every rank holds the merged result; rank 0 writes it
        return 0
    audit.write_audit(args.out, result, synthetic, train, classes)
    print_summary(result, Path(args.out), time.monotonic() - start)
    return 0


def print_summary(result, out: Path, seconds: float) -> None:
    """Per space: median synthetic distance, median scale and median ratio; flagged count; time."""
    print(f"{'space':<12} {'median dist':>12} {'scale':>12} {'ratio':>8}")
    for name, row in result.summary().items():
        cells = [f"{v:>12.4g}" if v is not None else f"{'-':>12}" for v in (row["median_distance"], row["median_scale"])]
        ratio = f"{row['median_ratio']:>8.3f}" if row["median_ratio"] is not None else f"{'-':>8}"
        print(f"{name:<12} {cells[0]} {cells[1]} {ratio}")
    flagged = sum(bool(it["flagged"]) for it in result.items)
    judged = sum(it["flagged"] is not None for it in result.items)
    note = "" if judged else " (no --heldout: no scales, no verdicts)"
    print(f"flagged {flagged} of {len(result.items)} synthetic images{note}; {seconds:.1f} s; wrote {out}/audit.json")
