"""``dgn synthesize``: DGN-AM from the command line; under torchrun the rows are sharded across ranks."""

from __future__ import annotations

import argparse
from pathlib import Path

from dgn.cli.common import (
    add_model_options,
    add_synthesis_options,
    add_topk_option,
    load_classifier_from_args,
    print_summary,
    progress_bar,
    read_topk_for,
    start_from_args,
    write_examples_figure,
)
from dgn.errors import DGNError

HELP = "DGN-AM: optimise generator codes to maximise units"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    add_synthesis_options(p)
    add_topk_option(p)
    p.add_argument("--facets", action="store_true",
                   help="multifaceted restarts (Nguyen et al. 2016): with --topk, each target's top images are coded "
                        "by the prior's encoder and clustered into --restarts groups; restart r starts from the r-th "
                        "centre, so restarts show different facets")
    p.add_argument("--facet-images", type=int, default=50, help="top images clustered per target (default 50)")


def run(args: argparse.Namespace) -> int:
    from dgn.targets import expand_targets

    targets = [t for text in args.target for t in expand_targets(text)]
    if args.facets and not args.topk:
        raise DGNError("--facets clusters each target's dataset examples: give them with --topk DIR (from dgn topk)")
    if args.facets and args.init_image:
        raise DGNError("--facets and --init-image both choose the start codes; use one")
    examples = read_topk_for(args, targets)
    manifest = run_synthesis(args, targets, examples=examples if args.facets else None)
    if manifest is not None:  # None on the ranks other than 0 of a torchrun run
        print_summary(manifest["rows"], Path(args.out))
        if examples is not None:
            write_examples_figure(Path(args.out), manifest, examples)
    return 0


def run_synthesis(args: argparse.Namespace, targets: list[str], gamma: float = 1.0,
                   code_penalty: float = 0.0, pair_smoothing: float = 0.0, examples=None) -> dict | None:
    """Run DGN-AM on ``targets`` with the synthesize options in ``args``; with ``examples`` (dataset examples of
    the targets), restarts start from the facets of each target's top images.

    Under torchrun the rows are sharded across ranks; rank 0 returns the merged manifest, the others None.
    """
    import functools
    import math

    from dgn import weights
    from dgn.distributed import init_world
    from dgn.models import load_generator
    from dgn.outputs import run_and_write
    from dgn.rows import coupled_rows, starts_by_row
    from dgn.synthesis import DGNAM, ActMaxSettings

    world, device = init_world(args.device)
    settings = ActMaxSettings(
        steps=args.steps, lr_start=args.lr_start, lr_end=args.lr_end, decay=args.decay, precision=args.precision,
        fit_mode=args.fit, post_relu=args.post_relu, crop_receptive_field=not args.no_rf_crop,
        pair_gamma=gamma, code_penalty=code_penalty, pair_smoothing=pair_smoothing,
        diversity=args.diversity, diversity_layer=args.diversity_layer,
    )
    generator = load_generator(args.generator, args.random_weights, args.seed, args.weights_dir)
    classifier = load_classifier_from_args(args, args.seed)
    bounds, bounds_label = weights.resolve_bounds(args.bounds, args.generator, math.prod(generator.code_shape),
                                                  args.random_weights, args.weights_dir)
    dgnam = DGNAM(generator, classifier, settings, device)
    rows = dgnam.plan(targets, args.restarts, args.seed)
    if examples is not None:
        from dgn.topk import multifaceted_starts

        start, start_record = multifaceted_starts(dgnam.codes(bounds), examples, rows, args.facet_images, args.seed,
                                                  args.random_weights, args.weights_dir)
    else:
        start, start_record = start_from_args(args, dgnam.codes(bounds))
    starts_by_row(rows, start)  # the number of starts fits the rows, before anything runs
    config = dgnam.describe()
    config.update(targets=targets, restarts=args.restarts, seed=args.seed, bounds=bounds_label,
                  random_weights=args.random_weights, display=args.display)
    if start_record is not None:
        config["start"] = start_record
    batch_size = args.batch_size
    if batch_size == "auto":  # measured with the deepest target; every rank uses the smallest choice
        from dgn.distributed import agree_on_minimum
        from dgn.throughput import choose_batch_size

        order = {name: i for i, (name, _) in enumerate(dgnam.classifier.module.named_modules())}
        units = [t for r in rows for t in (r.target, r.partner) if t is not None]
        deepest = max(units, key=lambda t: order.get(t.layer, len(order)))  # registration ~ execution order
        batch_size = agree_on_minimum(choose_batch_size(dgnam, str(deepest)), world)
        if world.is_main:
            print(f"--batch-size auto: {batch_size} rows per chunk")
    if settings.diversity:  # a target's restarts run in one batch: chunks (and torchrun shards) hold whole targets
        batch_size = coupled_rows(rows, set(), batch_size)[1]
    synthesize = functools.partial(dgnam.synthesize, targets, args.restarts, args.seed, upper_bound=bounds,
                                   start=start)
    manifest, optimised = run_and_write(synthesize, rows, dgnam, args.out, config, settings.steps, batch_size,
                                        args.resume, args.display, world,
                                        progress=lambda total: progress_bar(total, "synthesize", world.is_main))
    if world.distributed:
        print(f"rank {world.rank}/{world.size}: optimised {optimised} rows", flush=True)
    return manifest
