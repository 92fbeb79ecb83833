"""``dgn inspect activations``: argument parsing and printing; the method is in :mod:`dgn.inspect.activations`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dgn.cli.inspect.common import add_common_cli_arguments, cli_classifier
from dgn.errors import DGNError
from dgn.inspect.activations import (
    activation_figure,
    channel_image,
    display_image,
    layer_activations,
    load_input,
    top_units,
    upscale,
)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dgn inspect activations``."""
    add_common_cli_arguments(parser)
    parser.add_argument("--layer", default="conv1", help="layer name or alias (default: conv1)")
    parser.add_argument("--channel", type=int, default=None,
                        help="channel to zoom (default: the most active on the first image)")
    parser.add_argument("--top-k", type=int, default=9, help="how many most active units to list (default: 9)")
    parser.add_argument("--by", choices=["mean", "max"], default="mean", help="rank units by mean or max activation")
    parser.add_argument("--post-relu", action="store_true", help="activations after the layer's ReLU (default: before)")


def run_cli(args: argparse.Namespace) -> int:
    """Write activations.png (per image) and top_units.png; print the top units."""
    from dgn.render import montage, save_png

    classifier = cli_classifier(args)
    model = classifier.module.eval()
    inputs = load_input(args.image, classifier)
    acts = layer_activations(model, inputs, args.layer, rectify=args.post_relu)
    if args.top_k < 1:
        raise DGNError(f"--top-k must be at least 1, got {args.top_k}")
    top = top_units(acts, args.top_k, args.by)
    out = Path(args.out)
    written = []
    if acts.dim() == 4:
        for i, path in enumerate(args.image):
            channel = args.channel if args.channel is not None else top_units(acts[i : i + 1], 1, args.by)[0][0]
            figure = activation_figure(display_image(inputs[i], classifier.space), acts[i].cpu(), channel)
            name = "activations.png" if len(args.image) == 1 else f"activations_{i:03d}.png"
            save_png(out / name, figure)
            written.append(out / name)
        # each top unit's map on the image where it peaks
        tiles, labels = [], []
        for unit, score in top:
            best = int(acts[:, unit].flatten(1).amax(dim=1).argmax())
            tiles.append(upscale(channel_image(acts[best, unit].cpu()), 128))
            labels.append(f"{unit}: {score:.3g}")
        save_png(out / "top_units.png", montage(tiles, labels))
    else:
        if args.channel is not None:
            raise DGNError(f"--channel needs a layer with spatial output; {args.layer} has shape {tuple(acts.shape[1:])}")
        save_png(out / "top_units.png", _bar_chart(top, f"{args.classifier} {args.layer}: top units by {args.by}"))
    written.append(out / "top_units.png")
    print(f"top {len(top)} units of {args.layer} by {args.by} activation over {len(args.image)} image(s):")
    for unit, score in top:
        print(f"  {args.layer}:{unit}  {score:.4g}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _bar_chart(top: list[tuple[int, float]], title: str) -> np.ndarray:
    """A bar chart of (unit, score) pairs as an HxWx3 uint8 array (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.bar(range(len(top)), [s for _, s in top], color="tab:blue")
    ax.set_xticks(range(len(top)), [str(u) for u, _ in top])
    ax.set_xlabel("unit")
    ax.set_ylabel("activation")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return array
