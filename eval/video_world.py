"""The offline video world end to end: the shipped LRCN on real clips, and its preferred videos.

Prints (issue #6's report):
1. ``video-lrcn-shapes`` on held-out procedural clips (``make_clips(n, seed=1)``, the training recipe's
   held-out draw): accuracy and the mean probability of the true class with the frames in order, shuffled
   and reversed (the paper's frame-order probe, on real clips of the toy set);
2. for every class, a preferred video synthesised through ``cifar-deepsim-fc6`` (DGN-AM, one code per
   frame, 160 frames and 200 steps by default): the objective at the start and end, the class probability
   under the evaluation protocol and under the synthesis layout, the top class, and the order probe.

Writes a montage (one row per class, its first ``--show`` frames) with ``--montage``.

    python eval/video_world.py [--frames 160] [--steps 200] [--clips 800] [--montage docs/video-world.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))

from train_video_world import order_probe_report

from dgn import video, weights
from dgn.data_video import SHAPE_CLASSES, make_clips
from dgn.models import load_generator
from dgn.render import montage, save_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--mode", choices=video.MODES, default="protocol")
    parser.add_argument("--smoothness", type=float, default=0.0)
    parser.add_argument("--clips", type=int, default=800, help="held-out clips for the accuracy and the probe")
    parser.add_argument("--show", type=int, default=16, help="frames per class in the montage")
    parser.add_argument("--montage", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model, names = video.load_video_model("video-lrcn-shapes")
    start = time.time()
    clips, labels = make_clips(args.clips, seed=1)
    probe = order_probe_report(model.module, clips, labels, seed=0)
    print(f"video-lrcn-shapes on {args.clips} held-out clips ({time.time() - start:.0f} s):")
    print(f"  {'order':<10} {'accuracy':>8} {'p(true)':>8}")
    for order in ("original", "shuffled", "reversed"):
        print(f"  {order:<10} {probe[order]['accuracy']:>8.1%} {probe[order]['p_true']:>8.3f}")

    generator = load_generator("cifar-deepsim-fc6")
    bounds = weights.load_bounds(weights.get_entry("cifar-deepsim-fc6").default_bounds)
    settings = video.VideoSettings(frames=args.frames, steps=args.steps, mode=args.mode, smoothness=args.smoothness)
    synth = video.VideoSynthesizer(generator, model, settings, args.device)
    print(f"\npreferred videos ({args.frames} frames, {args.steps} steps, {args.mode}, cifar-deepsim-fc6 prior):")
    print(f"  {'class':<14} {'objective':>16} {'p protocol':>10} {'p ' + args.mode:>13} {'top':<14} "
          f"{'p shuffled':>10} {'p reversed':>10} {'s':>4}")
    tiles, captions = [], []
    for k, name in enumerate(SHAPE_CLASSES):
        t0 = time.time()
        result = synth.run(k, seed=0, upper_bound=bounds)
        images, frames = synth.render(result.codes)
        mean_protocol, per_frame = video.class_probabilities(model, frames, "protocol")
        if args.mode != "protocol":
            mean_mode, per_frame = video.class_probabilities(model, frames, args.mode)
        else:
            mean_mode = mean_protocol
        order = video.order_probe(model, frames, 0, "protocol", names)
        top = int(mean_protocol.argmax())
        print(f"  {name:<14} {result.objective_start:>7.2f} -> {result.objective_end:<6.2f} {float(mean_protocol[k]):>10.3f} "
              f"{float(mean_mode[k]):>13.3f} {names[top]:<14} {order['shuffled']['probs'][k]:>10.3f} "
              f"{order['reversed']['probs'][k]:>10.3f} {time.time() - t0:>4.0f}", flush=True)
        pictures = video.frames_to_uint8(images, generator.space)[: args.show]
        tiles += pictures
        captions += [f"{name} {i}" if i == 0 else f"{i} p={float(per_frame[i, k]):.2f}" for i in range(len(pictures))]
    if args.montage is not None:
        save_png(args.montage, montage(tiles, captions, columns=args.show, tile=64))
        print(f"\nwrote {args.montage}")


if __name__ == "__main__":
    main()
