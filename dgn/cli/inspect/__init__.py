"""``dgn inspect VERB``: the classic CNN visualisations, one verb per method.

Each verb's method lives in its own module of :mod:`dgn.inspect` (a library: it parses no arguments and
prints nothing); its command line is the module of the same name here, which defines
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``. This file only lists them. Modules are imported
when the parser is built, so keep their heavy imports (matplotlib) inside functions.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "classic CNN visualisations: activations, filters, deconvnet, occlusion, ..."

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "receptive-field": ("dgn.cli.inspect.receptive", "size and offset of a unit's receptive field (backward-pass method)"),
    "activations": ("dgn.cli.inspect.activations", "every channel of a layer for an image, and the layer's top-k units"),
    "filters": ("dgn.cli.inspect.filters", "first-layer filters as one tiled RGB image"),
    "attribution": ("dgn.cli.inspect.attribution", "project a unit to pixels: deconvnet, guided backprop, saliency"),
    "occlusion": ("dgn.cli.inspect.occlusion", "slide a grey square: class probability, top label, feature-map maps"),
    "invariance": ("dgn.cli.inspect.invariance", "feature distance per layer under shifts, scaling and rotation"),
    "neighbours": ("dgn.cli.inspect.neighbours", "nearest training images of a query in a layer's feature space"),
    "embedding": ("dgn.cli.inspect.embedding", "t-SNE or PCA layout of images by their features, as one picture"),
    "mixture": ("dgn.cli.inspect.mixture", "the K units a group of images drives hardest, synthesised as one image"),
    "evolution": ("dgn.cli.inspect.evolution", "the same units synthesised for every checkpoint of a training run"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one sub-command per inspect verb to ``parser``."""
    sub = parser.add_subparsers(dest="inspect_verb", required=True, parser_class=type(parser))
    for verb, (module_name, help_text) in VERBS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(verb, help=help_text)
        module.add_cli_arguments(p)
        p.set_defaults(inspect_module=module_name)


def run(args: argparse.Namespace) -> int:
    """Run the chosen inspect verb."""
    return importlib.import_module(args.inspect_module).run_cli(args)
