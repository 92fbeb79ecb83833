"""``dgn evolve``: gradient-free evolution of generator codes (GA or CMA-ES), many units at once; under torchrun
the rows are sharded across ranks."""

from __future__ import annotations

import argparse
from pathlib import Path

from dgn.cli.common import (
    add_model_options,
    add_target_option,
    batch_size,
    load_classifier_from_args,
    progress_bar,
)
from dgn.errors import DGNError

HELP = "black-box neurons: evolve generator codes without gradients (XDream's GA or CMA-ES)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    add_target_option(p)
    p.add_argument("--optimizer", choices=["ga", "cmaes"], default="ga",
                   help="ga: XDream's genetic algorithm; cmaes: separable CMA-ES (default ga)")
    p.add_argument("--evaluations", type=int, default=10_000, help="images scored per row (default 10000)")
    p.add_argument("--population", type=int, default=None, help="codes per generation (default: 20 ga, 40 cmaes)")
    p.add_argument("--mutation-rate", type=float, default=0.5, help="GA: share of genes mutated (default 0.5)")
    p.add_argument("--mutation-size", type=float, default=0.5, help="GA: mutation standard deviation (default 0.5)")
    p.add_argument("--selectivity", type=float, default=2.0, help="GA: selection pressure (default 2)")
    p.add_argument("--heritability", type=float, default=0.5, help="GA: share of genes from one parent (default 0.5)")
    p.add_argument("--elites", type=int, default=1, help="GA: best codes kept unchanged (default 1)")
    p.add_argument("--sigma", type=float, default=None,
                   help="CMA-ES: initial step size (default: a quarter of the mean code upper bound)")
    p.add_argument("--scorer", choices=["model", "files"], default="model",
                   help="model: the classifier's units without gradients; files: a rig answers through --loop-dir")
    p.add_argument("--loop-dir", default=None, help="files scorer: the folder shared with the rig (default OUT/loop)")
    p.add_argument("--timeout", type=float, default=3600.0, help="files scorer: seconds to wait for a generation")
    p.add_argument("--noise", default=None, metavar="KIND:LEVEL",
                   help="model scorer: simulate a recorded unit, gaussian:SNR or poisson:GAIN")
    p.add_argument("--strip-every", type=int, default=10, help="generations between images of the evolution strip")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--batch-size", type=batch_size, default=16, help="rows evolved together (default 16)")
    p.add_argument("--score-batch", type=int, default=256, help="images decoded and scored at once (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bounds", default=None,
                   help="code upper bounds: a file (one line of numbers), a registry name, or a number")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--post-relu", action="store_true", help="score the unit after its ReLU (default: before)")
    p.add_argument("--fit", choices=["auto", "crop", "resize"], default="auto")
    p.add_argument("--display", choices=["act_max", "imsave", "mean"], default="act_max",
                   help="the saved images' mapping (the rig always sees true colours, 'mean')")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: finished rows are skipped, an unfinished batch continues from its "
                        "last generation")
    p.add_argument("--out", required=True, help="output directory")


def run(args: argparse.Namespace) -> int:
    import functools
    import math

    from dgn import weights
    from dgn.distributed import init_world
    from dgn.evolve import Evolution, EvolutionSettings, write_evolution_figures
    from dgn.models import load_generator
    from dgn.outputs import run_and_write
    from dgn.scorers import FileScorer
    from dgn.targets import expand_targets

    if args.scorer == "model" and args.loop_dir:
        raise DGNError("--loop-dir is for --scorer files")
    if args.batch_size == "auto":
        raise DGNError("dgn evolve takes a number for --batch-size (rows); --score-batch sets the images per forward")
    world, device = init_world(args.device)
    settings = EvolutionSettings(
        optimizer=args.optimizer, evaluations=args.evaluations, population=args.population,
        mutation_rate=args.mutation_rate, mutation_size=args.mutation_size, selectivity=args.selectivity,
        heritability=args.heritability, elites=args.elites, sigma=args.sigma, fit_mode=args.fit,
        post_relu=args.post_relu, precision=args.precision, noise=args.noise, strip_every=args.strip_every,
        score_batch=args.score_batch,
    )
    generator = load_generator(args.generator, args.random_weights, args.seed, args.weights_dir)
    bounds, bounds_label = weights.resolve_bounds(args.bounds, args.generator, math.prod(generator.code_shape),
                                                  args.random_weights, args.weights_dir)
    out = Path(args.out)
    if args.scorer == "files":
        loop = Path(args.loop_dir) if args.loop_dir else out / "loop"
        evolution = Evolution(generator, None, settings, device, FileScorer(loop, args.timeout))
    else:
        evolution = Evolution(generator, load_classifier_from_args(args, args.seed), settings, device)
    targets = [t for text in args.target for t in expand_targets(text)]
    rows = evolution.plan(targets, args.restarts, args.seed)
    config = evolution.describe()
    config.update(targets=targets, restarts=args.restarts, seed=args.seed, bounds=bounds_label,
                  random_weights=args.random_weights, display=args.display)
    if args.scorer == "files":
        config["scorer"]["folder"] = str(loop)
        print(f"images of each generation go to {loop}/<generation>/; the rig answers with scores.csv there")
    evolve = functools.partial(evolution.evolve, targets, args.restarts, args.seed, upper_bound=bounds,
                               checkpoint=out / "state", checkpoint_every=1 if args.scorer == "files" else 25)
    manifest, optimised = run_and_write(
        evolve, rows, evolution, out, config, settings.generations, args.batch_size, args.resume, args.display, world,
        progress=lambda total: progress_bar(total, "evolve (generations x rows)", world.is_main),
        on_chunk=lambda part: write_evolution_figures(out, part, evolution, args.display),
    )
    if world.distributed:
        print(f"rank {world.rank}/{world.size}: evolved {optimised} rows", flush=True)
    if manifest is None:
        return 0
    rows_out = manifest["rows"]
    print(f"{'target':<22} {'restart':>7} {'first':>9} {'last':>9} {'best':>9} {'images':>8}")
    for r in rows_out[:40]:
        print(f"{r['target']:<22} {r['restart']:>7} {r['act_start']:>9.3f} {r['act_end']:>9.3f} "
              f"{r['act_best']:>9.3f} {r['evaluations']:>8}")
    if len(rows_out) > 40:
        print(f"... {len(rows_out) - 40} more rows in {out / 'manifest.json'}")
    print(f"wrote {len(rows_out)} rows' best images, codes, evolution/ strips and score plots, montage.png and "
          f"manifest.json to {out}")
    return 0
