"""Pieces every command shares: the one-line-error parser, model and synthesis options, loading the
classifier a command names, and the progress bar (the library reports progress through callbacks)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dgn.errors import DGNError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise DGNError(message)


def add_model_options(p: argparse.ArgumentParser, generator: bool = True) -> None:
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


def add_target_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="what to maximise; repeatable: LAYER:UNIT (a neuron; conv layers: at the centre), "
                        "LAYER:UNIT@Y,X (a neuron there), LAYER:UNIT@mean (a channel's mean), LAYER:layer "
                        "(DeepDream's mean squared activation), LAYER:prob=UNIT (its softmax probability), "
                        "LAYER:dir=FILE[@Y,X|@mean] (a direction: the dot "
                        "product with the vector in FILE, .npy or text), A+B (two neurons, see dgn pair); ranges "
                        "fc8:0-9")


def add_synthesis_options(p: argparse.ArgumentParser) -> None:
    add_target_option(p)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--batch-size", type=batch_size, default=16,
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
    p.add_argument("--display", choices=["act_max", "imsave", "mean"], default="act_max",
                   help="image mapping: the original's clip(-120,120)/240+0.5 (act_max), the same stretched per "
                        "image to 0..255 as the original's saved PNGs (imsave), or adding the mean (mean)")
    p.add_argument("--no-rf-crop", action="store_true", help="do not crop spatial units' images to the receptive field")
    add_diversity_options(p)
    add_start_options(p, "one for every row, or one per row (targets x restarts, restarts innermost)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished rows")
    p.add_argument("--out", required=True, help="output directory")


def add_diversity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--diversity", type=float, default=0.0, metavar="WEIGHT",
                   help="push each target's restarts apart: Lucid's diversity term (Gram-matrix cosine similarity) "
                        "with this weight (default 0: off); a target's restarts then run in one batch")
    p.add_argument("--diversity-layer", default=None, metavar="LAYER",
                   help="the layer whose features --diversity compares (default: each target's own layer)")


def add_start_options(p: argparse.ArgumentParser, how_many: str) -> None:
    p.add_argument("--init-image", action="append", default=[], metavar="PATH",
                   help=f"start from the code of a real image instead of a seeded random code; repeatable: {how_many}")
    p.add_argument("--init-mode", choices=["encode", "invert"], default="encode",
                   help="the start's code: the prior's encoder layer of the image (encode, as the original's "
                        "--init_file), or a code optimised until G reproduces the image (invert; needs only G)")
    p.add_argument("--invert-steps", type=int, default=200, help="Adam steps of --init-mode invert (default 200)")


def start_from_args(args: argparse.Namespace, param) -> tuple[object, dict | None]:
    """The start codes of ``--init-image`` for parameterisation ``param`` (None without), and their record;
    prints each start image's reconstruction error."""
    if not args.init_image:
        return None, None
    from dgn.starts import Inversion, starts_from_files

    codes, record = starts_from_files(param, args.init_image, args.init_mode, args.random_weights, args.seed,
                                      args.weights_dir, Inversion(args.invert_steps))
    errors = ", ".join(f"{e:.3f}" for e in record["reconstruction_rmse"][:8])
    more = " ..." if len(record["reconstruction_rmse"]) > 8 else ""
    print(f"start codes of {len(record['reconstruction_rmse'])} image(s) by {args.init_mode}; "
          f"RMS error of G(code) against the image (RGB 0..1): {errors}{more}")
    return codes, record


def batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}")
    return value


def load_classifier_from_args(args: argparse.Namespace, seed: int):
    from dgn.models import load_caffe_classifier, load_classifier

    if args.classifier.endswith(".prototxt"):
        return load_caffe_classifier(args.classifier, args.caffemodel, args.input_space, args.random_weights)
    return load_classifier(args.classifier, args.random_weights, seed, args.weights_dir)


@contextmanager
def progress_bar(total: int, desc: str, show: bool = True) -> Iterator[Callable[[int], object]]:
    """A tqdm bar of ``total`` steps (drawn on terminals only), as the ``progress(n)`` callback the library takes."""
    from tqdm import tqdm

    with tqdm(total=total, unit="step", desc=desc, disable=None if show else True) as bar:
        yield bar.update


def print_summary(rows: list[dict], out: Path) -> None:
    print(f"{'target':<22} {'restart':>7} {'start':>9} {'end':>9} {'best':>9}")
    for r in rows[:40]:
        print(f"{r['target']:<22} {r['restart']:>7} {r['act_start']:>9.3f} {r['act_end']:>9.3f} {r['act_best']:>9.3f}")
    if len(rows) > 40:
        print(f"... {len(rows) - 40} more rows in {out / 'manifest.json'}")
    print(f"wrote {len(rows)} images, montage.png and manifest.json to {out}")


def add_topk_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topk", default=None, metavar="DIR",
                   help="the output of dgn topk for this classifier: also write examples.png, each target's top "
                        "dataset images with scores beside its images (the DGN-AM supplement's Fig. S8)")


def read_topk_for(args: argparse.Namespace, targets: Sequence[str]):
    """The examples of ``--topk`` (None without it), checked against the run's classifier and target layers
    before anything runs."""
    if not getattr(args, "topk", None):
        return None
    from dgn.targets import parse_target
    from dgn.topk import TopExamples, check_examples_cover

    examples = TopExamples.read(args.topk)
    name = None if args.classifier.endswith(".prototxt") else args.classifier
    layers = [t.layer for text in targets for t in map(parse_target, text.split("+")) if t.is_neuron]
    check_examples_cover(examples, name or examples.index.get("config", {}).get("classifier"), layers)
    return examples


def write_examples_figure(out: Path, manifest: dict, examples) -> None:
    """``examples.png`` in the run folder (see :func:`dgn.topk.examples_figure`)."""
    from dgn.render import save_png
    from dgn.topk import examples_figure

    save_png(out / "examples.png", examples_figure(out, manifest["rows"], examples))
    print(f"wrote {out / 'examples.png'}: top dataset images beside each target's images")
