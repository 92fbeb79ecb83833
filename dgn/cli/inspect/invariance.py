"""``dgn inspect invariance``: argument parsing and printing; the method is in :mod:`dgn.inspect.invariance`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dgn.errors import DGNError
from dgn.inspect.invariance import IDENTITY, KINDS, InvarianceAnalysis, default_amounts, plot_invariance
from dgn.models import input_shape


def add_cli_arguments(parser) -> None:
    """Options of ``dgn inspect invariance``."""
    parser.add_argument("--images", required=True, help="folder of images (class subfolders give the true class)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--per-class", type=int, default=None, help="use only the first N images of each class")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layers (default: every conv and fc layer); 'pixel' for the image itself")
    parser.add_argument("--translate", default=None, metavar="A,B,...", help="vertical shifts in pixels")
    parser.add_argument("--scale", default=None, metavar="A,B,...", help="scale factors")
    parser.add_argument("--rotate", default=None, metavar="A,B,...", help="rotations in degrees")
    parser.add_argument("--classifier", default="cifar-caffenet", help="classifier name (default: cifar-caffenet)")
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")
    parser.add_argument("--out", required=True, help="output directory (invariance.png, invariance.json)")


def _numbers(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DGNError(f"{option} {text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise DGNError(f"{option} is empty; give numbers such as 0,4,8")
    return values


def run_cli(args) -> int:
    """Measure and plot the invariances of a folder of images."""
    from dgn.files import atomic_write_json
    from dgn.inspect.neighbours import load_folder
    from dgn.models import load_classifier

    classifier = load_classifier(args.classifier, weights_dir=args.weights_dir)
    shape = input_shape(classifier)
    images = load_folder(args.images, shape[1:], args.limit, args.per_class)
    amounts = default_amounts(shape[1])
    for kind in KINDS:
        given = getattr(args, kind)
        if given is not None:
            amounts[kind] = _numbers(given, f"--{kind}")
    layers = [v.strip() for v in args.layers.split(",") if v.strip()] if args.layers else None
    result = InvarianceAnalysis(classifier, layers).run(images.rgb, images.labels, amounts)
    out = Path(args.out)
    plot_invariance(result, out / "invariance.png", f"{args.classifier}, {len(images.paths)} images")
    atomic_write_json(out / "invariance.json", {"classifier": args.classifier, "images": len(images.paths),
                                                **result.to_json()})
    for kind in result.amounts:
        offsets = np.abs(np.array(result.amounts[kind]) - IDENTITY[kind])
        if kind == "rotate":
            offsets = np.minimum(offsets % 360, 360 - offsets % 360)
        far = int(np.argmax(offsets))  # the strongest transformation asked for
        parts = ", ".join(f"{k} {v[far]:.2f}" for k, v in result.normalised[kind].items())
        prob = result.probability[kind].mean(0)[far]
        print(f"{kind} {result.amounts[kind][far]:g}: normalised distance {parts}; P(true) {prob:.2f}")
    print(f"-> {out / 'invariance.png'}")
    return 0
