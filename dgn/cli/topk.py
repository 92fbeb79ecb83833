"""``dgn topk``: the real images that drive each unit most (and least), in one streaming pass; under torchrun
the images are sharded across ranks and the ranks' examples merged."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dgn.cli.common import add_model_options, load_classifier_from_args, progress_bar
from dgn.errors import DGNError

HELP = "dataset examples: the top-k (and bottom-k) images of every unit of some layers, with receptive-field crops"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, generator=False)
    p.add_argument("--layers", required=True, help="comma-separated layers, e.g. conv5,fc6,fc7,fc8")
    p.add_argument("--images", required=True, help="folder of images (class subfolders allowed)")
    p.add_argument("--k", type=int, default=9, help="highest-scoring images kept per unit (default 9)")
    p.add_argument("--bottom", type=int, default=0, help="lowest-scoring images kept per unit (default 0)")
    p.add_argument("--sample", type=int, default=2000,
                   help="evenly spaced images whose score of every unit is kept, for the atlas's histograms "
                        "(default 2000; 0: none)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes decoding images ahead of the network (default 1; 0: decode in the main process)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass and per chunk")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images (in sorted order)")
    p.add_argument("--fit", choices=["auto", "crop", "resize"], default="auto",
                   help="how images are brought to the classifier's input (default auto)")
    p.add_argument("--no-crops", action="store_true", help="do not write receptive-field crops of conv units")
    p.add_argument("--checkpoint-every", type=int, default=50, help="chunks between checkpoints (default 50)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished pass in --out")
    p.add_argument("--out", required=True, help="output directory")


def run(args: argparse.Namespace) -> int:
    from dgn.data import ImageFolderDataset
    from dgn.distributed import barrier, init_world
    from dgn.engine import resolve_device
    from dgn.topk import ExampleFinder, merge_parts, read_examples, save_examples, write_examples

    world, device = init_world(args.device)
    out = Path(args.out)
    if (out / "examples.json").exists():
        raise DGNError(f"{out} already holds examples; choose another --out")
    state = out / "state"
    if state.exists() and any(state.iterdir()) and not args.resume:
        raise DGNError(f"{out} holds an unfinished pass; add --resume to continue it, or choose another --out")
    root = Path(args.images)
    dataset = ImageFolderDataset(root)
    paths, labels = dataset.paths, dataset.labels
    if args.limit is not None:
        if args.limit < 1:
            raise DGNError(f"--limit must be >= 1, got {args.limit}")
        paths, labels = paths[: args.limit], labels[: args.limit]
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    classifier = load_classifier_from_args(args, 0)
    finder = ExampleFinder(classifier, layers, args.k, args.bottom, args.fit, resolve_device(device), args.sample)
    part = state / f"rank-{world.rank:04d}.safetensors"
    with progress_bar(len(paths) // world.size, "topk (images)", world.is_main) as progress:
        examples = finder.run(paths, args.batch_size, world.rank, world.size, checkpoint=part,
                              checkpoint_every=args.checkpoint_every, progress=progress, workers=args.workers)
    if world.distributed:
        save_examples(state / f"done-{world.rank:04d}.safetensors", examples)
        barrier(world)
        if not world.is_main:
            return 0
        examples = merge_parts([read_examples(state / f"done-{r:04d}.safetensors")[0] for r in range(world.size)])
    class_names = [dataset.classes[i] if i >= 0 else None for i in labels] if dataset.classes else None
    write_examples(out, examples, finder, paths, root, class_names, crops=not args.no_crops,
                   config={"batch_size": args.batch_size, "ranks": world.size})
    shutil.rmtree(state, ignore_errors=True)
    sizes = ", ".join(f"{name} {ex.units}" for name, ex in examples.items())
    print(f"top {args.k}{f' and bottom {args.bottom}' if args.bottom else ''} of {len(paths)} images for every unit "
          f"({sizes}) -> {out}/examples.json, examples.safetensors{'' if args.no_crops else ', crops/'}")
    return 0
