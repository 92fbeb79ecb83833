"""``dgn inspect evolution``: argument parsing and printing; the method is in :mod:`dgn.inspect.evolution`."""

from __future__ import annotations

from pathlib import Path

from dgn.inspect.evolution import FORMAT, evolution_picture, feature_evolution, read_checkpoints


def add_cli_arguments(parser) -> None:
    """Options of ``dgn inspect evolution``."""
    parser.add_argument("--checkpoints", required=True, help=f"folder of {FORMAT} safetensors files")
    parser.add_argument("--target", action="append", required=True, metavar="LAYER:UNIT[@Y,X]",
                        help="a unit to synthesise (repeat, or a range such as fc8:0-9)")
    parser.add_argument("--generator", default="cifar-deepsim-fc6", help="generator (default: cifar-deepsim-fc6)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--out", required=True, help="output directory (evolution.png, evolution.json)")


def run_cli(args) -> int:
    """Synthesise the targets for every checkpoint and write the strips."""
    from dgn import weights
    from dgn.files import atomic_write_json
    from dgn.models import load_generator
    from dgn.render import save_png
    from dgn.synthesis import ActMaxSettings
    from dgn.targets import expand_targets

    checkpoints = read_checkpoints(args.checkpoints)
    targets = [t for text in args.target for t in expand_targets(text)]
    generator = load_generator(args.generator, weights_dir=args.weights_dir)
    bounds, bounds_name = weights.resolve_bounds(None, args.generator, 0, weights_dir=args.weights_dir)
    result = feature_evolution(generator, checkpoints, targets, ActMaxSettings(steps=args.steps), args.seed,
                               bounds, args.device)
    out = Path(args.out)
    save_png(out / "evolution.png", evolution_picture(result, generator.space))
    atomic_write_json(out / "evolution.json", {
        "generator": args.generator, "bounds": bounds_name, "seed": args.seed, "steps": args.steps,
        "targets": targets,
        "checkpoints": [{"file": c.path.name, "architecture": c.architecture, "epoch": c.epoch,
                         "val_accuracy": c.val_accuracy} for c in checkpoints],
        "act_end": result.activations.tolist(),
    })
    print(f"{len(targets)} targets x {len(checkpoints)} checkpoints (epochs "
          f"{', '.join(str(c.epoch) for c in checkpoints)}) -> {out / 'evolution.png'}")
    return 0
