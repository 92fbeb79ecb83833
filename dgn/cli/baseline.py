"""``dgn baseline``: image-space activation maximisation from the command line (argument parsing only).

Same targets, outputs (images, codes, montage, ``manifest.json``) and ``--resume`` as ``dgn synthesize``;
the codes are the images themselves. 
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dgn.cli.common import add_diversity_options, add_target_option, load_classifier_from_args, progress_bar
from dgn.errors import DGNError

HELP = "image-space activation maximisation (no generator), same outputs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dgn baseline`` options to ``parser``.

    Args:
        parser: the (sub)parser of the ``baseline`` command.
    """
    from dgn.baseline import PRESET_ALIASES, PRESETS

    names = ", ".join([*PRESETS, *PRESET_ALIASES])
    p = parser
    p.add_argument("--preset", default="yosinski", help=f"regulariser preset ({names}; default: yosinski)")
    p.add_argument("--classifier", default="caffenet",
                   help="classifier name (default: caffenet), or a Caffe deploy .prototxt (with --caffemodel)")
    p.add_argument("--caffemodel", default=None, help="weights of a --classifier given as a .prototxt")
    p.add_argument("--input-space", default="caffe-bgr-imagenet",
                   help="pixel space of a .prototxt classifier's input "
                        "(caffe-bgr-imagenet, rgb01, torchvision-imagenet)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (smoke tests, benchmarks)")
    p.add_argument("--weights-dir", default=None, help="directory with weights copied by hand (also $DGN_WEIGHTS_DIR)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    add_target_option(p)
    p.add_argument("--steps", type=int, default=None, help="iterations per row (default: the preset's)")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16, help="rows optimised together")
    p.add_argument("--seed", type=int, default=0, help="base seed of the starts and every random choice")
    p.add_argument("--lr", default=None,
                   help="learning rate, or 'auto' (keep the best of several rates per row); default: the preset's")
    p.add_argument("--post-relu", action="store_true", help="maximise the unit after its ReLU (default: before)")
    add_diversity_options(p)
    p.add_argument("--init-image", action="append", default=[], metavar="PATH",
                   help="start from a real image (resized to the input) instead of noise; repeatable: one for every "
                        "row, or one per row (targets x restarts); the accentuate preset needs it")
    p.add_argument("--anchor-layer", default=None, metavar="LAYER",
                   help="feature accentuation: the layer whose features the start image keeps (accentuate: conv2)")
    p.add_argument("--anchor-weight", type=float, default=None,
                   help="weight of that regulariser (accentuate: 300; 0 turns it off)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--display", choices=["mean", "act_max"], default="mean",
                   help="image mapping: add the mean back (default), or the original act_max clip(-120,120)/240+0.5")
    p.add_argument("--attribution", action="store_true",
                   help="also write attribution/<row>.png (|d objective / d image| summed over the steps) and "
                        "<row>_rgba.png (the image with it as opacity: MACO's transparency map)")
    p.add_argument("--no-rf-crop", action="store_true", help="do not crop spatial units' images to the receptive field")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished rows")
    p.add_argument("--out", required=True, help="output directory")


AUTO_LR_FACTORS = (0.5, 1.0, 2.0, 4.0)  # --lr auto on a preset without candidates: these times its rate


def settings_from_args(args: argparse.Namespace):
    """The preset named by ``--preset`` with the command line's overrides applied.

    Raises:
        DGNError: unknown preset, or a ``--lr`` that is neither a positive number nor "auto".
    """
    from dataclasses import replace

    from dgn.baseline import preset

    settings = preset(args.preset)
    changes: dict = {"post_relu": args.post_relu, "precision": args.precision,
                     "crop_receptive_field": not args.no_rf_crop, "diversity": args.diversity,
                     "diversity_layer": args.diversity_layer}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.anchor_layer is not None:
        changes["anchor_layer"] = args.anchor_layer
    if args.anchor_weight is not None:
        changes["anchor_weight"] = args.anchor_weight
    if args.lr is not None:
        if args.lr == "auto":
            changes["auto_lr"] = settings.auto_lr or tuple(f * settings.lr for f in AUTO_LR_FACTORS)
        else:
            try:
                changes.update(lr=float(args.lr), auto_lr=())
            except ValueError:
                raise DGNError(f"--lr must be a positive number or 'auto', got {args.lr!r}") from None
    return replace(settings, **changes)


def run(args: argparse.Namespace) -> int:
    """Run ``dgn baseline``: optimise images for every (target, restart) row and write the run directory.

    Args:
        args: parsed options (see :func:`add_arguments`).

    Returns:
        The exit status (0).
    """
    import functools

    from dgn.baseline import ImageAM, write_attribution
    from dgn.distributed import init_world
    from dgn.outputs import run_and_write
    from dgn.rows import coupled_rows
    from dgn.targets import expand_targets

    world, device = init_world(args.device)
    settings = settings_from_args(args)
    targets = [t for text in args.target for t in expand_targets(text)]
    am = ImageAM(load_classifier_from_args(args, args.seed), settings, device)
    rows = am.plan(targets, args.restarts, args.seed)
    start = None
    if settings.anchor_weight and not args.init_image:
        raise DGNError(f"{settings.name} accentuates a real image: give it with --init-image PATH "
                       "(or --anchor-weight 0 to start from noise)")
    if args.init_image:
        from dgn import spaces
        from dgn.rows import starts_by_row
        from dgn.starts import read_start_images

        rgb = read_start_images(args.init_image, am.size)
        start = spaces.from_rgb01(rgb, am.classifier.space)
        starts_by_row(rows, start)  # the number of images fits the rows, before anything runs
    config = am.describe()
    config.update(targets=targets, restarts=args.restarts, seed=args.seed,
                  random_weights=args.random_weights, display=args.display)
    if args.init_image:
        config["start"] = {"images": [str(p) for p in args.init_image]}
    batch_size = args.batch_size
    if settings.diversity:  # a target's restarts run in one batch: chunks (and torchrun shards) hold whole targets
        batch_size = coupled_rows(rows, set(), batch_size)[1]
    synthesize = functools.partial(am.synthesize, targets, args.restarts, args.seed, start=start)
    on_chunk = None
    if args.attribution:
        config["attribution"] = "attribution/<row>.png and <row>_rgba.png: summed |d objective / d image|"
        on_chunk = functools.partial(write_attribution, args.out, method=am, display=args.display)
    manifest, optimised = run_and_write(
        synthesize, rows, am, args.out, config, am.steps_per_row, batch_size, args.resume, args.display, world,
        progress=lambda total: progress_bar(total, f"baseline {settings.name}", world.is_main), on_chunk=on_chunk)
    if world.distributed:
        print(f"rank {world.rank}/{world.size}: optimised {optimised} rows", flush=True)
    if manifest is not None:  # None on the ranks other than 0 of a torchrun run
        chosen_lr = {r["key"]: r["lr"] for r in manifest["rows"] if "lr" in r} if settings.auto_lr else {}
        _print_summary(manifest["rows"], chosen_lr, Path(args.out))
        _warn_if_flat(manifest["rows"], settings, args.preset)
    return 0


def _warn_if_flat(rows: list[dict], settings, preset_name: str) -> None:
    """Say so when images stayed flat (a grey image is not a visualisation)."""
    from dgn.baseline import FLAT, PRESETS, preset

    flat = [r for r in rows if r.get("contrast", FLAT) < FLAT]
    if not flat:
        return
    published = preset(preset_name).steps if preset_name in PRESETS or preset_name == "yosinski" else None
    hint = "; try a larger --lr for this network's gradient scale, or more --steps"
    if published is not None and published > settings.steps:
        hint = (f"; {preset_name} was published for {published} steps on CaffeNet: try --steps {published}, or a "
                "larger --lr for this network's gradient scale")
    print(f"warning: {len(flat)} of {len(rows)} images are flat (contrast below {FLAT:g} grey levels) after "
          f"{settings.steps} steps{hint}")


def _print_summary(rows: list[dict], chosen_lr: dict[str, float], out: Path) -> None:
    lr_head = f" {'lr':>8}" if chosen_lr else ""
    print(f"{'target':<22} {'restart':>7} {'start':>9} {'end':>9} {'best':>9}{lr_head}")
    for r in rows[:40]:
        lr = chosen_lr.get(r["key"])
        lr_cell = (f" {lr:>8.3g}" if lr is not None else f" {'-':>8}") if chosen_lr else ""
        print(f"{r['target']:<22} {r['restart']:>7} {r['act_start']:>9.3f} {r['act_end']:>9.3f} {r['act_best']:>9.3f}"
              f"{lr_cell}")
    if len(rows) > 40:
        print(f"... {len(rows) - 40} more rows in {out / 'manifest.json'}")
    print(f"wrote {len(rows)} images, montage.png and manifest.json to {out}")
