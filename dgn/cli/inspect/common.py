"""Options and loading shared by the ``dgn inspect`` verbs."""

from __future__ import annotations

import argparse

from dgn.models import Classifier


def add_common_cli_arguments(parser: argparse.ArgumentParser, image: bool = True) -> None:
    """Options every inspect verb takes: classifier, weights, output folder and (optionally) an image."""
    parser.add_argument("--classifier", default="cifar-caffenet", help="classifier name (default: cifar-caffenet)")
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")
    parser.add_argument("--random-weights", action="store_true", help="seeded random weights (smoke tests)")
    parser.add_argument("--out", required=True, help="output directory for the PNGs")
    if image:
        parser.add_argument("--image", required=True, nargs="+", metavar="PATH", help="image file(s) (any format PIL reads)")


def cli_classifier(args: argparse.Namespace) -> Classifier:
    """The classifier named by ``--classifier`` (eval mode, gradients off for its parameters)."""
    from dgn.models import load_classifier

    return load_classifier(args.classifier, args.random_weights, 0, args.weights_dir)
