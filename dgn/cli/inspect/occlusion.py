"""``dgn inspect occlusion``: argument parsing and printing; the method is in :mod:`dgn.inspect.occlusion`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dgn.errors import DGNError
from dgn.inspect.occlusion import (
    Occlusion,
    correspondence,
    grey_value,
    occlude,
    occlusion_figure,
    random_positions,
)


def _position(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise DGNError(f"--part {text!r} is not Y,X (two integers)") from None
    return y, x


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dgn inspect occlusion``."""
    from dgn.cli.inspect.common import add_common_cli_arguments

    add_common_cli_arguments(parser)
    parser.add_argument("--size", type=int, default=8, help="side of the grey square in input pixels (default: 8)")
    parser.add_argument("--stride", type=int, default=2, help="step between square positions (default: 2)")
    parser.add_argument("--target-class", type=int, default=None, help="class to map (default: the clean top class)")
    parser.add_argument("--feature", default="conv5",
                        help="feature map LAYER:CHANNEL, or LAYER for its strongest channel (default: conv5)")
    parser.add_argument("--batch-size", type=int, default=64, help="occluded images per forward pass")
    parser.add_argument("--part", action="append", default=None, metavar="Y,X",
                        help="correspondence (table 1): top-left of the square over the same part, once for all "
                             "images or once per image; needs two or more --image")
    parser.add_argument("--layers", nargs="+", default=["conv5", "fc7"], help="layers of the correspondence measure")
    parser.add_argument("--random-trials", type=int, default=10, help="random-position controls (default: 10)")


def run_cli(args: argparse.Namespace) -> int:
    """Write occlusion.png per image; with --part also print the correspondence measure and its control."""
    from dgn.cli.inspect.common import cli_classifier
    from dgn.inspect.activations import class_names, display_image, load_input
    from dgn.render import montage, save_png

    classifier = cli_classifier(args)
    model = classifier.module.eval()
    inputs = load_input(args.image, classifier)
    method = Occlusion(model, classifier.space, args.size, args.stride, args.batch_size)
    out = Path(args.out)
    for i in range(len(args.image)):
        start = time.perf_counter()
        maps = method.attribute(inputs[i], args.target_class, args.feature)
        seconds = time.perf_counter() - start
        names = class_names(classifier, maps.classes)
        name = "occlusion.png" if len(args.image) == 1 else f"occlusion_{i:03d}.png"
        save_png(out / name, occlusion_figure(display_image(inputs[i], classifier.space), maps, names))
        low = divmod(int(maps.probability.argmin()), len(maps.xs))
        print(f"{args.image[i]}: {len(maps.ys) * len(maps.xs)} positions in {seconds:.2f} s; "
              f"p({names[maps.target]}) clean {maps.clean_probability:.3f}, min {float(maps.probability.min()):.3f} "
              f"with the square at (y={maps.ys[low[0]]}, x={maps.xs[low[1]]}); feature {maps.feature_name}")
        print(f"wrote {out / name}")
    if args.part:
        _run_correspondence(args, model, classifier.space, inputs, out, montage, save_png, display_image)
    return 0


def _run_correspondence(args, model, space, inputs, out, montage, save_png, display_image) -> None:
    count = inputs.shape[0]
    if count < 2:
        raise DGNError("--part (the correspondence measure) needs two or more --image of one class")
    parts = [_position(p) for p in args.part]
    if len(parts) == 1:
        parts = parts * count
    if len(parts) != count:
        raise DGNError(f"give --part once for all images or once per image: {len(parts)} for {count} images")
    if args.random_trials < 1:
        raise DGNError(f"--random-trials must be at least 1, got {args.random_trials}")
    height, width = inputs.shape[-2:]
    grey = grey_value(space, inputs.shape[1])
    tiles = [display_image(img, space) for img in occlude(inputs, parts, args.size, grey)]
    save_png(out / "correspondence.png", montage(tiles, [f"({y},{x})" for y, x in parts], columns=count))
    print(f"correspondence (mean feature sign change over {count * (count - 1) // 2} image pairs; lower = more consistent):")
    for layer in args.layers:
        mean, std = correspondence(model, inputs, parts, args.size, layer, space)
        controls = [correspondence(model, inputs, random_positions(count, height, width, args.size, seed),
                                   args.size, layer, space)[0] for seed in range(args.random_trials)]
        print(f"  {layer}: part {mean:.3f} +- {std:.3f}   random {np.mean(controls):.3f} +- {np.std(controls):.3f} "
              f"({args.random_trials} draws)")
    print(f"wrote {out / 'correspondence.png'}")
