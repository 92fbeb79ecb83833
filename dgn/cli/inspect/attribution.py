"""``dgn inspect attribution``: argument parsing and printing; the method is in :mod:`dgn.inspect.attribution`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dgn.inspect.attribution import METHODS, attribution_method, saliency_map, signed_image


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dgn inspect attribution``."""
    from dgn.cli.inspect.common import add_common_cli_arguments

    add_common_cli_arguments(parser)
    parser.add_argument("--target", required=True, metavar="LAYER:UNIT[@Y,X]",
                        help="the unit to project, e.g. fc8:3 or conv5:12 (strongest position) or conv5:12@3,3")
    parser.add_argument("--method", choices=[*METHODS, "all"], default="deconvnet",
                        help="deconvnet (default), guided (backpropagation), saliency (gradient), or all three")


def run_cli(args: argparse.Namespace) -> int:
    """Write attribution.png (one per image): the input beside each method's projection."""
    from dgn.cli.inspect.common import cli_classifier
    from dgn.inspect.activations import display_image, load_input, side_by_side
    from dgn.render import save_png

    classifier = cli_classifier(args)
    inputs = load_input(args.image, classifier)
    methods = list(METHODS) if args.method == "all" else [args.method]
    results = {m: attribution_method(m, classifier.module).attribute(inputs, args.target) for m in methods}
    out = Path(args.out)
    for i in range(len(args.image)):
        panels = [(display_image(inputs[i], classifier.space), "input")]
        for method, attr in results.items():
            if method == "saliency":
                panels.append((saliency_map(attr[i]), "saliency |grad|"))
            else:
                panels.append((signed_image(attr[i], classifier.space), method))
        name = "attribution.png" if len(args.image) == 1 else f"attribution_{i:03d}.png"
        save_png(out / name, side_by_side(panels, height=192))
        print(f"wrote {out / name}  ({args.target}, {', '.join(methods)})")
    return 0
