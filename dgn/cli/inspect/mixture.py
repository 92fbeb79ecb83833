"""``dgn inspect mixture``: argument parsing and printing; the method is in :mod:`dgn.inspect.mixture`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dgn.inspect.mixture import image_sums, mixture_montage, synthesise_dgnam, synthesise_image_am, top_units


def add_cli_arguments(parser) -> None:
    """Options of ``dgn inspect mixture``."""
    parser.add_argument("--images", required=True, help="the group of images (a folder, e.g. one class folder)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--layer", default="fc7", help="layer whose units are ranked (default fc7)")
    parser.add_argument("--k", type=int, default=5, help="number of units to mix (default 5)")
    parser.add_argument("--post-relu", action="store_true", help="rank and sum rectified activations")
    parser.add_argument("--steps", type=int, default=200, help="DGN-AM steps (default 200)")
    parser.add_argument("--baseline-preset", default="simonyan", help="image-space preset (default simonyan)")
    parser.add_argument("--baseline-steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", default="cifar-caffenet", help="classifier name (default: cifar-caffenet)")
    parser.add_argument("--generator", default="cifar-deepsim-fc6", help="generator (default: cifar-deepsim-fc6)")
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--out", required=True, help="output directory (mixture.png, mixture.json)")


def run_cli(args) -> int:
    """Rank the group's units, synthesise both mixtures, write the picture and the numbers."""
    from dgn import weights
    from dgn.baseline import preset
    from dgn.files import atomic_write_json
    from dgn.inspect.neighbours import load_folder
    from dgn.models import input_shape, load_classifier, load_generator
    from dgn.render import save_png
    from dgn.synthesis import ActMaxSettings

    classifier = load_classifier(args.classifier, weights_dir=args.weights_dir)
    generator = load_generator(args.generator, weights_dir=args.weights_dir)
    group = load_folder(args.images, input_shape(classifier)[1:], args.limit)
    units = top_units(classifier, group.rgb, args.layer, args.k, args.post_relu)
    bounds, bounds_name = weights.resolve_bounds(None, args.generator, 0, weights_dir=args.weights_dir)
    baseline = preset(args.baseline_preset)
    if args.baseline_steps is not None:
        baseline = dataclasses.replace(baseline, steps=args.baseline_steps)
    mixtures = [
        synthesise_dgnam(generator, classifier, units, ActMaxSettings(steps=args.steps), args.seed, bounds,
                         args.post_relu, args.device),
        synthesise_image_am(classifier, units, baseline, args.seed, args.post_relu, args.device),
    ]
    best = float(image_sums(classifier, group.rgb, units, args.post_relu).max())
    out = Path(args.out)
    save_png(out / "mixture.png", mixture_montage(group.rgb, mixtures))
    atomic_write_json(out / "mixture.json", {
        "classifier": args.classifier, "generator": args.generator, "bounds": bounds_name,
        "images": len(group.paths), "layer": units.layer, "units": units.units, "post_relu": args.post_relu,
        "group_mean_per_unit": units.means, "group_mean_sum": units.group_sum,
        "group_best_image_sum": best,
        "mixtures": [{"method": m.method, "sum_start": m.sum_start, "sum_end": m.sum_end,
                      "per_unit": m.per_unit, "sum_over_group_mean": m.sum_end / units.group_sum
                      if units.group_sum else None} for m in mixtures],
    })
    print(f"{len(group.paths)} images: top {len(units.units)} units of {args.layer} {units.units}, "
          f"group mean sum {units.group_sum:.3g}, best image {best:.3g}")
    for m in mixtures:
        print(f"  {m.method}: summed activation {m.sum_start:.3g} -> {m.sum_end:.3g}")
    print(f"-> {out / 'mixture.png'}")
    return 0
