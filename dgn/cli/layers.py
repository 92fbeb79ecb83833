"""``dgn layers``: a model's layer names, aliases and output shapes."""

from __future__ import annotations

import argparse

HELP = "list a model's layers, aliases and output shapes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a classifier or generator name")


def run(args: argparse.Namespace) -> int:
    from dgn import models
    from dgn.layers import layer_table

    if args.model in models.names("generator"):
        module = models.load_generator(args.model, random_weights=True).module
        arch = models.ARCHITECTURES[args.model]
        shape = arch.code_shape
    else:
        classifier = models.load_classifier(args.model, random_weights=True)
        module, shape = classifier.module, models.input_shape(classifier)
    print(f"{'name':<28} {'alias':<10} {'type':<20} output shape")
    for row in layer_table(module, shape):
        out_shape = "x".join(map(str, row["shape"])) if row["shape"] else "-"
        print(f"{row['name']:<28} {row['alias']:<10} {row['type']:<20} {out_shape}")
    return 0
