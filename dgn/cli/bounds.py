"""``dgn bounds``: per-code-unit upper bounds from a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from dgn.cli.common import add_model_options, load_classifier_from_args
from dgn.errors import DGNError

HELP = "per-code-unit upper bounds round(mean + k*std) from a folder of images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, generator=False)
    p.add_argument("--layer", default="fc6")
    p.add_argument("--images", required=True, help="folder of images (class subfolders allowed)")
    p.add_argument("--k", type=float, default=3.0, help="standard deviations above the mean (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="bounds file to write")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dgn.bounds import activation_stats, bounds_from_stats, write_bounds
    from dgn.data import ImageFolderDataset, load_images
    from dgn.engine import resolve_device

    classifier = load_classifier_from_args(args, 0)
    root = Path(args.images)
    if not root.is_dir():
        raise DGNError(f"--images {root} is not a directory")
    paths = ImageFolderDataset(root).paths
    if not paths:
        raise DGNError(f"no images found under {root}")
    size = classifier.space.size
    batches = (load_images(paths[i : i + args.batch_size], size=size) for i in range(0, len(paths), args.batch_size))
    batches = tqdm(batches, total=-(-len(paths) // args.batch_size), desc="bounds", disable=None)
    mean, std, count = activation_stats(classifier, args.layer, batches, device=resolve_device(args.device))
    bounds = bounds_from_stats(mean, std, args.k)
    write_bounds(args.out, bounds)
    print(f"{bounds.numel()} bounds from {count} images: min {bounds.min():.0f}, median {bounds.median():.0f}, "
          f"max {bounds.max():.0f} -> {args.out}")
    return 0
