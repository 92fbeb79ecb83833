"""``dgn video``: preferred videos of an LRCN activity-recognition net, and the frame-order probe.

Argument parsing only; the work is in :mod:`dgn.video`. ``dgn.cli`` wires :func:`add_arguments` and
:func:`run` in. Offline by default: the moving-shapes LRCN (``video-lrcn-shapes``) driven by the CIFAR
world's generator (``cifar-deepsim-fc6``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dgn.cli.common import add_start_options, start_from_args
from dgn.errors import DGNError

HELP = "preferred videos of an LRCN activity-recognition net; frame-order probe"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dgn video`` options to ``parser``."""
    p = parser
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--class", dest="class_", metavar="N|NAME", help="the LRCN output unit to synthesise a video for")
    what.add_argument("--probe-order", metavar="FRAMES_DIR_OR_GIF",
                      help="class probabilities of a video in order, shuffled and reversed")
    p.add_argument("--model", default="video-lrcn-shapes",
                   help="video-lrcn-shapes (shipped, default) or lrcn-ucf101 (with --caffemodel)")
    p.add_argument("--caffemodel", default=None, help="the released LRCN weights (RGB_lstm_model_iter_30000.caffemodel)")
    p.add_argument("--class-names", default=None, help="class names, one per line (UCF-101's classInd.txt works)")
    p.add_argument("--generator", default="cifar-deepsim-fc6", help="generator name (default: cifar-deepsim-fc6)")
    p.add_argument("--frames", type=int, default=160, help="frames of the video, one code each (default 160)")
    p.add_argument("--mode", choices=["protocol", "continuous"], default="protocol",
                   help="the evaluation's 16-frame windows at stride 8 (default), or one LSTM sequence")
    p.add_argument("--objective", choices=["logit", "softmax"], default="logit",
                   help="mean pre-softmax logit of the class over steps (default), or its mean softmax probability")
    p.add_argument("--smoothness", type=float, default=0.0,
                   help="weight of the penalty on consecutive codes' mean squared difference (default 0)")
    p.add_argument("--shared-start", action="store_true", help="all frames start from one code")
    add_start_options(p, "one image for every frame, one per frame, or a GIF or folder of frames")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="seed of the initial codes and of the probe's shuffle")
    p.add_argument("--lr-start", type=float, default=8.0)
    p.add_argument("--lr-end", type=float, default=1e-10)
    p.add_argument("--decay", type=float, default=0.99)
    p.add_argument("--bounds", default=None,
                   help="code upper bounds: a number, a file, or a registry name (default: the generator's)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of the GIF (default 10)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (smoke tests)")
    p.add_argument("--weights-dir", default=None, help="directory with weights copied by hand (also $DGN_WEIGHTS_DIR)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--out", default=None, help="output directory (required for synthesis; the probe writes probe.json)")


def resolve_class(text: str, class_names: list[str], num_classes: int) -> int:
    """A class given as an index or a name (case-insensitive) -> its index."""
    try:
        index = int(text)
    except ValueError:
        lowered = [n.lower() for n in class_names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        names = f"names: {', '.join(class_names)}" if class_names else "this model has no class names (--class-names)"
        raise DGNError(f"unknown class {text!r}; give 0..{num_classes - 1} or one of the {names}") from None
    if not 0 <= index < num_classes:
        raise DGNError(f"class {index} is out of range; valid: 0..{num_classes - 1}")
    return index


def run(args: argparse.Namespace) -> int:
    """Run ``dgn video`` (synthesis, or ``--probe-order``) and print a short summary."""
    from dgn import video
    from dgn.engine import resolve_device

    if args.probe_order is None and not args.out:
        raise DGNError("dgn video --class needs --out DIR")
    if args.probe_order is not None and not Path(args.probe_order).exists():
        raise DGNError(f"video {args.probe_order} does not exist; give a folder of frames or a GIF")
    device = resolve_device(args.device)
    model, class_names = video.load_video_model(args.model, args.caffemodel, args.random_weights, args.seed,
                                                args.weights_dir)
    if args.class_names:
        class_names = video.read_class_names(args.class_names)
    model = model.to(device)
    if args.probe_order:
        return _probe(args, model, class_names, device)
    return _synthesise(args, model, class_names, device)


def _probe(args: argparse.Namespace, model, class_names: list[str], device) -> int:
    from dgn import video
    from dgn.files import atomic_write_json

    result = video.probe_video(model, args.probe_order, args.seed, "protocol", class_names, device)
    print(f"{result['frames']} frames of {args.probe_order} ({model.name}, evaluation protocol: 16-frame windows, stride 8)")
    top = result["original"]["top"]
    print(f"{'order':<10} {'top class':<20} {'p(top)':>7} {'p(' + result['original']['top_name'] + ')':>16}")
    for order in ("original", "shuffled", "reversed"):
        row = result[order]
        print(f"{order:<10} {row['top_name']:<20} {row['p_top']:>7.3f} {row['probs'][top]:>16.3f}")
    if args.out:
        atomic_write_json(Path(args.out) / "probe.json", result)
        print(f"wrote {Path(args.out) / 'probe.json'}")
    return 0


def _synthesise(args: argparse.Namespace, model, class_names: list[str], device) -> int:
    from tqdm import tqdm

    from dgn import video, weights
    from dgn.models import load_generator

    lrcn = video.lrcn_of(model)
    class_index = resolve_class(args.class_, class_names, lrcn.config.num_classes)
    settings = video.VideoSettings(
        frames=args.frames, mode=args.mode, objective=args.objective, smoothness=args.smoothness,
        shared_start=args.shared_start, steps=args.steps, lr_start=args.lr_start, lr_end=args.lr_end, decay=args.decay,
    )
    generator = load_generator(args.generator, args.random_weights, args.seed, args.weights_dir)
    bounds, bounds_label = weights.resolve_bounds(args.bounds, args.generator, math.prod(generator.code_shape),
                                                  args.random_weights, args.weights_dir)
    synth = video.VideoSynthesizer(generator, model, settings, device)
    start, start_record = start_from_args(args, synth.codes(bounds).per_frame())
    if start is not None:
        if len(start) not in (1, settings.frames):
            raise DGNError(f"{len(start)} start images for {settings.frames} frames: give one for every frame or "
                           "one per frame")
        start = start.expand(settings.frames, *start.shape[1:]) if len(start) == 1 else start
    with tqdm(total=settings.steps, unit="step", desc=f"video {args.class_}", disable=None) as bar:
        result = synth.run(class_index, args.seed, bounds, codes=start, progress=bar.update)
    extra = {"bounds": bounds_label, **({"start": start_record} if start_record is not None else {})}
    manifest = video.write_video(args.out, synth, result, class_names, args.seed, args.fps, extra)
    probs = manifest["class_probability"]
    probe = manifest["order_probe"]
    print(f"class {manifest['class_name']} ({class_index}): objective {result.objective_start:.3f} -> "
          f"{result.objective_end:.3f} ({settings.objective}, {settings.mode})")
    synthesis_layout = f", {probs[settings.mode]:.3f} ({settings.mode})" if settings.mode != "protocol" else ""
    print(f"p(class) = {probs['protocol']:.3f} (evaluation protocol){synthesis_layout}; "
          f"top class {manifest['top_class']['name']}")
    print("order probe p(class): " + ", ".join(f"{k} {probe[k]['probs'][class_index]:.3f}"
                                                 for k in ("original", "shuffled", "reversed")))
    print(f"wrote video.gif, strip.png, frames/ and manifest.json to {args.out}")
    return 0

