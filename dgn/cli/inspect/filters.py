"""``dgn inspect filters``: argument parsing and printing; the method is in :mod:`dgn.inspect.filters`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dgn.errors import DGNError
from dgn.inspect.filters import filter_tiles, layer_filters


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dgn inspect filters``."""
    from dgn.cli.inspect.common import add_common_cli_arguments

    add_common_cli_arguments(parser, image=False)
    parser.add_argument("--layer", default=None, help="a conv layer reading the image (default: the first conv)")
    parser.add_argument("--normalise", choices=["filter", "global"], default="filter",
                        help="scale each filter on its own (default) or all filters on one scale")
    parser.add_argument("--zoom", type=int, default=None, help="pixels per weight (default: about 24 px per filter)")


def run_cli(args: argparse.Namespace) -> int:
    """Write filters.png: the layer's filters tiled in RGB order."""
    from dgn.cli.inspect.common import cli_classifier
    from dgn.render import save_png

    classifier = cli_classifier(args)
    name, weight = layer_filters(classifier.module, args.layer)
    zoom = args.zoom if args.zoom is not None else max(1, math.ceil(24 / weight.shape[-1]))
    if zoom < 1:
        raise DGNError(f"--zoom must be at least 1, got {zoom}")
    image = filter_tiles(weight, classifier.space, args.normalise, zoom=zoom)
    path = Path(args.out) / "filters.png"
    save_png(path, image)
    order = "BGR weights shown as RGB" if classifier.space.channel_order == "BGR" else "RGB"
    print(f"{args.classifier} {name}: {weight.shape[0]} filters {weight.shape[2]}x{weight.shape[3]} "
          f"({order}, {args.normalise} normalisation)")
    print(f"wrote {path}")
    return 0
