"""Memorisation audit of the demo's synthetic images against the CIFAR-10 world's training images.

The world's split is reproduced with ``split_indices`` of ``training/train_cifar_world.py`` (per class,
in sorted folder order, a seeded ``torch.randperm``: 800 train / 200 held out, seed 0); the held-out
images give each class's distance scale. Encoder: ``cifar-caffenet``; spaces: pixel + conv1..fc8
(post-ReLU where a ReLU follows).

Usage:
    python eval/audit_cifar.py --synthetic RUN_DIR [--data ROOT] --out DIR
    python eval/audit_cifar.py --demo-out DIR --out DIR     # runs `dgn demo` first
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "training"))

from train_cifar_world import split_indices

from dgn import audit
from dgn.cli.audit import print_summary
from dgn.models import load_classifier

DATA = "/tmp/cifar_real/cifar10_test_jpg/test"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", default=None, help="a dgn run directory (e.g. from `dgn demo`)")
    parser.add_argument("--demo-out", default=None, help="run `dgn demo --out DIR` first and audit it")
    parser.add_argument("--data", default=DATA, help="the extracted CIFAR-10 test JPEGs (ROOT/<class>/*.jpg)")
    parser.add_argument("--seed", type=int, default=0, help="the world's split seed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if (args.synthetic is None) == (args.demo_out is None):
        parser.error("give exactly one of --synthetic and --demo-out")
    synthetic_dir = args.synthetic
    if args.demo_out is not None:
        from dgn.demo import run_demo

        run_demo(args.demo_out)
        synthetic_dir = args.demo_out
    start = time.monotonic()
    encoder = load_classifier("cifar-caffenet").to("cpu")
    size = encoder.space.size
    everything, classes = audit.ImageSet.from_folder(args.data, size)
    if len(everything) != 10_000:
        raise SystemExit(f"expected 10,000 images in {args.data}, found {len(everything)}")
    train_idx, held_idx = split_indices(everything.labels, 800, args.seed)
    train, heldout = everything.subset(train_idx), everything.subset(held_idx)
    synthetic = audit.synthetic_from_run(synthetic_dir, size)
    auditor = audit.MemorisationAudit(encoder, k=args.k, threshold=args.threshold)
    result = auditor.audit(synthetic, train, heldout)
    audit.write_audit(args.out, result, synthetic, train, classes)
    print(f"{len(synthetic)} synthetic images, {len(train)} train / {len(heldout)} held-out (seed {args.seed})")
    print_summary(result, Path(args.out), time.monotonic() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
