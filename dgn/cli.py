"""The ``dgn`` command line: argument parsing only; the work is done by the library.

Bad input gives one line on stderr (``dgn: error: ...``), exit status 2, and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dgn.errors import DGNError
from dgn.files import check_writable


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise DGNError(message)


def _add_model_options(p: argparse.ArgumentParser, generator: bool = True) -> None:
    if generator:
        p.add_argument("--generator", default="deepsim-fc6", help="generator name (default: deepsim-fc6)")
    p.add_argument("--classifier", default="caffenet",
                   help="classifier name (default: caffenet), or a Caffe deploy .prototxt (with --caffemodel)")
    p.add_argument("--caffemodel", default=None, help="weights of a --classifier given as a .prototxt")
    p.add_argument("--input-space", default="caffe-bgr-imagenet",
                   help="pixel space of a .prototxt classifier's input (caffe-bgr-imagenet, rgb01, torchvision-imagenet)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (smoke tests, benchmarks)")
    p.add_argument("--weights-dir", default=None, help="directory with weights copied by hand (also $DGN_WEIGHTS_DIR)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")


def _add_synthesis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", action="append", required=True, metavar="LAYER:UNIT[@Y,X]",
                   help="unit to maximise; repeatable; ranges allowed (fc8:0-9)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--batch-size", type=_batch_size, default=16,
                   help="rows optimised together, or 'auto': as many as fit in 80%% of the free GPU memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bounds", default=None,
                   help="code upper bounds: a file (one line of numbers), a registry name, or a number")
    p.add_argument("--lr-start", type=float, default=8.0)
    p.add_argument("--lr-end", type=float, default=1e-10)
    p.add_argument("--decay", type=float, default=0.99)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--post-relu", action="store_true", help="maximise the unit after its ReLU (default: before)")
    p.add_argument("--fit", choices=["auto", "crop", "resize"], default="auto",
                   help="how generator images are fitted to the classifier's input size")
    p.add_argument("--display", choices=["act_max", "mean"], default="act_max",
                   help="image mapping: the original's clip(-120,120)/240+0.5, or adding the mean")
    p.add_argument("--no-rf-crop", action="store_true", help="do not crop spatial units' images to the receptive field")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished rows")
    p.add_argument("--out", required=True, help="output directory")


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dgn", description="Preferred inputs of neurons through a deep generator network prior.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="offline tour: DGN-AM on the shipped CIFAR-10 world, with an HTML gallery")
    p.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    p.add_argument("--quick", action="store_true", help="a fast smoke version (1 restart, 60 steps from lr 2)")
    p.add_argument("--paper", action="store_true",
                   help="the original act_max settings and 3-sigma bounds instead of the demo's measured changes")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="act_max steps (default 400; 200 with --paper)")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights-dir", default=None, help="also look here for the judge's weights (ResNet-20)")

    p = sub.add_parser("synthesize", help="DGN-AM: optimise generator codes to maximise units")
    _add_model_options(p)
    _add_synthesis_options(p)

    p = sub.add_parser("pair", help="two-neuron art: maximise two units at once with a balance penalty")
    _add_model_options(p)
    _add_synthesis_options(p)
    p.add_argument("--with", dest="partners", action="append", default=[], metavar="LAYER:UNIT",
                   help="partner unit of --target; repeatable (one pair per partner)")
    p.add_argument("--gamma", type=float, default=1.0, help="balance penalty weight on |a - b| (default 1)")
    p.add_argument("--code-penalty", type=float, default=0.0, help="weight of ||code|| (eq. 2's lambda; default 0)")
    p.add_argument("--balance-width", type=float, default=0.0, metavar="DELTA",
                   help="smooth the balance penalty: sqrt((a-b)^2 + DELTA^2) - DELTA instead of |a-b| (default 0: eq. 2)")

    p = sub.add_parser("baseline", help="image-space activation maximisation (no generator), same outputs")
    from dgn import baseline_cli

    baseline_cli.add_arguments(p)

    p = sub.add_parser("audit", help="memorisation audit: nearest training images in pixel and code spaces")
    from dgn import audit_cli

    audit_cli.add_arguments(p)

    p = sub.add_parser("video", help="preferred videos of an LRCN activity-recognition net; frame-order probe")
    from dgn import video_cli

    video_cli.add_arguments(p)

    p = sub.add_parser("inspect", help="classic CNN visualisations: activations, filters, deconvnet, occlusion, ...")
    from dgn.inspect import cli as inspect_cli

    inspect_cli.add_arguments(p)

    p = sub.add_parser("layers", help="list a model's layers, aliases and output shapes")
    p.add_argument("model", help="a classifier or generator name")

    p = sub.add_parser("bounds", help="per-code-unit upper bounds round(mean + k*std) from a folder of images")
    _add_model_options(p, generator=False)
    p.add_argument("--layer", default="fc6")
    p.add_argument("--images", required=True, help="folder of images (class subfolders allowed)")
    p.add_argument("--k", type=float, default=3.0, help="standard deviations above the mean (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="bounds file to write")

    p = sub.add_parser("weights", help="the registry of pretrained files: list, download, path")
    p.add_argument("action", choices=["list", "download", "path"])
    p.add_argument("name", nargs="?", help="registry name (for download and path)")
    p.add_argument("--weights-dir", default=None, help="directory with files copied by hand (also $DGN_WEIGHTS_DIR)")
    p.add_argument("--force", action="store_true", help="download / convert again")

    p = sub.add_parser("convert", help="convert original files, e.g. Caffe models, to safetensors")
    p.add_argument("format", choices=["caffe"])
    p.add_argument("--caffemodel", help="binary .caffemodel")
    p.add_argument("--prototxt", help="deploy .prototxt (checked against the weights; needed for --arch generic)")
    p.add_argument("--arch", help="target architecture: deepsim-fc6/fc7/fc8/pool5, caffenet, or generic")
    p.add_argument("--inspect", metavar="CAFFEMODEL", help="list a .caffemodel's layers, types and blob shapes")
    p.add_argument("--out", help="safetensors file to write")
    return parser


# ----- commands -----------------------------------------------------------------------------------
def _classifier(args: argparse.Namespace, seed: int):
    from dgn.models import load_caffe_classifier, load_classifier

    if args.classifier.endswith(".prototxt"):
        return load_caffe_classifier(args.classifier, args.caffemodel, args.input_space, args.random_weights)
    return load_classifier(args.classifier, args.random_weights, seed, args.weights_dir)


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from dgn.targets import expand_targets

    manifest = _run_synthesis(args, [t for text in args.target for t in expand_targets(text)])
    if manifest is not None:  # None on the ranks other than 0 of a torchrun run
        _print_summary(manifest["rows"], Path(args.out))
    return 0


def _run_synthesis(args: argparse.Namespace, targets: list[str], gamma: float = 1.0,
                   code_penalty: float = 0.0, pair_smoothing: float = 0.0) -> dict | None:
    """Run DGN-AM on ``targets`` with the synthesize options in ``args``.

    Under torchrun the rows are sharded across ranks; rank 0 returns the merged manifest, the others None.
    """
    import functools
    import math

    from dgn import weights
    from dgn.distributed import init_world
    from dgn.models import load_generator
    from dgn.outputs import run_and_write
    from dgn.synthesis import DGNAM, ActMaxSettings

    world, device = init_world(args.device)
    settings = ActMaxSettings(
        steps=args.steps, lr_start=args.lr_start, lr_end=args.lr_end, decay=args.decay, precision=args.precision,
        fit_mode=args.fit, post_relu=args.post_relu, crop_receptive_field=not args.no_rf_crop,
        pair_gamma=gamma, code_penalty=code_penalty, pair_smoothing=pair_smoothing,
    )
    generator = load_generator(args.generator, args.random_weights, args.seed, args.weights_dir)
    classifier = _classifier(args, args.seed)
    bounds, bounds_label = weights.resolve_bounds(args.bounds, args.generator, math.prod(generator.code_shape),
                                                  args.random_weights, args.weights_dir)
    dgnam = DGNAM(generator, classifier, settings, device)
    rows = dgnam.plan(targets, args.restarts, args.seed)
    config = dgnam.describe()
    config.update(targets=targets, restarts=args.restarts, seed=args.seed, bounds=bounds_label,
                  random_weights=args.random_weights, display=args.display)
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
    synthesize = functools.partial(dgnam.synthesize, targets, args.restarts, args.seed, upper_bound=bounds)
    return run_and_write(synthesize, rows, dgnam, args.out, config, settings.steps, batch_size,
                         args.resume, args.display, world)


def _cmd_pair(args: argparse.Namespace) -> int:
    """Two-neuron art: A alone, each partner alone, and A+partner with the balance penalty, as one grid."""
    import numpy as np
    from PIL import Image

    from dgn.render import montage, save_png

    anchor = args.target[0]
    if len(args.target) != 1 or "+" in anchor:
        raise DGNError("dgn pair takes one --target (the anchor) and its partners with --with")
    if not args.partners:
        raise DGNError("give at least one partner unit with --with, e.g. --with fc8:3")
    singles = [anchor, *args.partners]
    pairs = [f"{anchor}+{b}" for b in args.partners]
    manifest = _run_synthesis(args, singles + pairs, args.gamma, args.code_penalty, args.balance_width)
    if manifest is None:  # a rank other than 0 of a torchrun run: rank 0 draws the grid
        return 0
    rows = manifest["rows"]
    single_end = {(r["target"], r["restart"]): r["act_end"] for r in rows if "partner" not in r}
    for r in rows:
        if "partner" in r:
            r["single_a"] = single_end.get((anchor, r["restart"]))
            r["single_b"] = single_end.get((r["partner"], r["restart"]))
    from dgn.files import atomic_write_json

    out = Path(args.out)
    atomic_write_json(out / "manifest.json", {**manifest, "finished": True})

    def picture(row: dict) -> np.ndarray:
        return np.asarray(Image.open(out / row["image"]).convert("RGB"))

    # Per restart: a row of single-unit images, then the pair images under their partners.
    grid, grid_labels = [], []
    for restart in range(args.restarts):
        alone = [r for r in rows if r["restart"] == restart and "partner" not in r]
        paired = [r for r in rows if r["restart"] == restart and "partner" in r]
        grid += [picture(r) for r in alone] + [np.full_like(picture(alone[0]), 255)] + [picture(r) for r in paired]
        grid_labels += [f"{r['target']}: {r['act_end']:.3g}" for r in alone] + [f"pairs with {anchor}"]
        grid_labels += [f"{r['act_a']:.3g} | {r['act_b']:.3g}" for r in paired]
    save_png(out / "pairs.png", montage(grid, grid_labels, columns=len(singles)))
    print(f"{'pair':<24} {'restart':>7} {'act a':>8} {'act b':>8} {'alone a':>8} {'alone b':>8}")
    for r in rows:
        if "partner" in r:
            print(f"{r['target']:<24} {r['restart']:>7} {r['act_a']:>8.2f} {r['act_b']:>8.2f} "
                  f"{r['single_a']:>8.2f} {r['single_b']:>8.2f}")
    print(f"wrote pairs.png (top: single units; below: pairs, both activations under each) to {out}")
    return 0


def _print_summary(rows: list[dict], out: Path) -> None:
    print(f"{'target':<22} {'restart':>7} {'start':>9} {'end':>9} {'best':>9}")
    for r in rows[:40]:
        print(f"{r['target']:<22} {r['restart']:>7} {r['act_start']:>9.3f} {r['act_end']:>9.3f} {r['act_best']:>9.3f}")
    if len(rows) > 40:
        print(f"... {len(rows) - 40} more rows in {out / 'manifest.json'}")
    print(f"wrote {len(rows)} images, montage.png and manifest.json to {out}")


def _cmd_layers(args: argparse.Namespace) -> int:
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


def _cmd_bounds(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dgn.bounds import activation_stats, bounds_from_stats, write_bounds
    from dgn.data import ImageFolderDataset, load_images
    from dgn.synthesis import resolve_device

    classifier = _classifier(args, 0)
    root = Path(args.images)
    if not root.is_dir():
        raise DGNError(f"--images {root} is not a directory")
    paths = ImageFolderDataset(root).paths
    if not paths:
        raise DGNError(f"no images found under {root}")
    size = classifier.space.size
    batches = (load_images(paths[i : i + args.batch_size], size=size) for i in range(0, len(paths), args.batch_size))
    batches = tqdm(batches, total=-(-len(paths) // args.batch_size), desc="bounds", disable=None)
    mean, std, count = activation_stats(classifier, args.layer, batches, device=resolve_device(args.device))
    bounds = bounds_from_stats(mean, std, args.k)
    write_bounds(args.out, bounds)
    print(f"{bounds.numel()} bounds from {count} images: min {bounds.min():.0f}, median {bounds.median():.0f}, "
          f"max {bounds.max():.0f} -> {args.out}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from dgn import weights

    if args.action == "list":
        print(f"{'name':<20} {'kind':<11} {'local':<6} licence")
        for row in weights.describe(args.weights_dir):
            licence = row["licence"].split(":")[0].split(";")[0]
            print(f"{row['name']:<20} {row['kind']:<11} {'yes' if row['cached'] else 'no':<6} {licence[:70]}")
        print("The DeePSim generator weights are for non-commercial research only (Dosovitskiy & Brox).")
        return 0
    if not args.name:
        raise DGNError(f"weights {args.action} needs a NAME; valid: {', '.join(weights.names())}")
    if args.action == "download":
        print(weights.download(args.name, args.weights_dir, force=args.force))
        return 0
    found = weights.path(args.name, args.weights_dir)
    if found is None:
        raise DGNError(f"{args.name} is not available locally; run `dgn weights download {args.name}`")
    print(found)
    return 0


_CONVERTIBLE = ("deepsim-fc6", "deepsim-fc7", "deepsim-fc8", "deepsim-pool5", "caffenet", "generic")


def _cmd_convert(args: argparse.Namespace) -> int:
    from dgn import caffe

    if args.inspect:
        print(caffe.inspect_caffemodel(args.inspect))
        return 0
    missing = [opt for opt in ("caffemodel", "arch", "out") if not getattr(args, opt)]
    if missing:
        raise DGNError(f"convert caffe needs --{', --'.join(missing)} (or --inspect CAFFEMODEL)")
    if args.arch not in _CONVERTIBLE:
        raise DGNError(f"unknown --arch {args.arch!r}; valid: {', '.join(_CONVERTIBLE)}")
    from safetensors.torch import save as safetensors_save

    from dgn.files import atomic_write_bytes

    net = caffe.read_caffemodel(args.caffemodel)
    if args.arch == "generic":
        if not args.prototxt:
            raise DGNError("--arch generic builds the module from the deploy prototxt: give --prototxt")
        module = caffe.build_module(args.prototxt, net)
        report = None
    else:
        from dgn import models

        module = models.ARCHITECTURES[args.arch].build()
        if args.prototxt:
            declared = {layer.name for layer in caffe.read_prototxt(args.prototxt).layers}
            absent = [layer.name for layer in net.layers if layer.blobs and layer.name not in declared]
            if absent:
                raise DGNError(f"layers {', '.join(absent[:5])} of the caffemodel are not in {args.prototxt}")
        report = caffe.load_into(module, net, strict=False)
        if report.missing:
            raise DGNError(f"the caffemodel does not fill {len(report.missing)} parameters of {args.arch}, e.g. "
                           f"{', '.join(report.missing[:4])}; is it the right --arch?")
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(args.out, safetensors_save(state, metadata={"source": str(args.caffemodel), "arch": args.arch}))
    print(f"wrote {len(state)} tensors to {args.out}")
    if report is not None:
        print(f"loaded {len(report.loaded)} blobs; Caffe blobs without a {args.arch} parameter: "
              f"{', '.join(report.unmapped) or 'none'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from dgn import demo

    demo.check_available(args.weights_dir)
    targets, restarts, steps = demo.plan(args.quick, args.restarts, args.steps, args.paper)
    start = time.time()
    with tqdm(total=len(targets) * restarts * steps, unit="step", desc="demo", disable=None) as bar:
        summary = demo.run_demo(args.out, args.quick, args.restarts, args.steps, args.device, args.weights_dir,
                                progress=bar.update, paper=args.paper)
    rows = summary["rows"]
    print(f"{'target':<10} {'class':<11} {'restarts':>8} {'act start':>10} {'act end':>9}  judge (ResNet-20)")
    for target in dict.fromkeys(r["target"] for r in rows):
        group = [r for r in rows if r["target"] == target]
        start_mean = sum(r["act_start"] for r in group) / len(group)
        end_mean = sum(r["act_end"] for r in group) / len(group)
        verdicts = ", ".join(r["judge"] for r in group if "judge" in r)
        print(f"{target:<10} {group[0].get('class', '-'):<11} {len(group):>8} {start_mean:>10.2f} {end_mean:>9.2f}  {verdicts}")
    if summary["judge_accuracy"] is not None:
        print(f"ResNet-20 (not trained by us) recognises {summary['judge_accuracy']:.0%} of the output-unit images")
    else:
        print("ResNet-20 weights not found: `dgn weights download resnet20-cifar10` to judge the images")
    print(f"{len(rows)} images in {time.time() - start:.0f} s; open {summary['index']}")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from dgn import audit_cli

    return audit_cli.run(args)


def _cmd_baseline(args: argparse.Namespace) -> int:
    from dgn import baseline_cli

    return baseline_cli.run(args)


def _cmd_video(args: argparse.Namespace) -> int:
    from dgn import video_cli

    return video_cli.run(args)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from dgn.inspect import cli as inspect_cli

    return inspect_cli.run(args)


FILE_OUTPUTS = {"bounds", "convert"}  # commands whose --out names a file; every other --out is a folder
COMMANDS = {
    "video": _cmd_video,
    "inspect": _cmd_inspect,
    "demo": _cmd_demo,
    "synthesize": _cmd_synthesize,
    "baseline": _cmd_baseline,
    "pair": _cmd_pair,
    "audit": _cmd_audit,
    "layers": _cmd_layers,
    "bounds": _cmd_bounds,
    "weights": _cmd_weights,
    "convert": _cmd_convert,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dgn`` console script."""
    finished = False
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "out", None):
            check_writable(args.out, folder=args.command not in FILE_OUTPUTS)
        code = COMMANDS[args.command](args)
        finished = code == 0
        return code
    except DGNError as err:
        print(f"dgn: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dgn layers caffenet | head`
        sys.stderr.close()
        return 0
    except OSError as err:  # a file that vanished or a full disk mid-run: say which, without a traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"dgn: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgn: interrupted; finished rows are saved (use --resume)", file=sys.stderr)
        return 130
    finally:
        if "dgn.distributed" in sys.modules:  # only a command that may have joined a torchrun group
            sys.modules["dgn.distributed"].leave_world(finished)


if __name__ == "__main__":
    sys.exit(main())
