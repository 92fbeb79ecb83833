"""``dgn inspect embedding``: argument parsing and printing; the method is in :mod:`dgn.inspect.embedding`."""

from __future__ import annotations

from pathlib import Path

from dgn.inspect.embedding import embed, neighbour_purity, thumbnail_picture


def add_cli_arguments(parser) -> None:
    """Options of ``dgn inspect embedding``."""
    parser.add_argument("--images", required=True, help="folder of images (class subfolders allowed)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--per-class", type=int, default=None, help="use only the first N images of each class")
    parser.add_argument("--layer", default="fc7", help="layer whose features are embedded, or 'pixel' (default fc7)")
    parser.add_argument("--method", choices=["tsne", "pca"], default="tsne")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--iterations", type=int, default=1000, help="t-SNE steps (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=2000, help="side of the picture in pixels (default 2000)")
    parser.add_argument("--thumb", type=int, default=40, help="side of each thumbnail (default 40)")
    parser.add_argument("--grid", action="store_true", help="snap thumbnails to a grid so none overlap")
    parser.add_argument("--classifier", default="cifar-caffenet", help="classifier name (default: cifar-caffenet)")
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")
    parser.add_argument("--out", required=True, help="output directory (embedding.png, embedding.json)")


def run_cli(args) -> int:
    """Embed the folder's images and write the picture and the positions."""
    import time

    from dgn.files import atomic_write_json
    from dgn.inspect.neighbours import _uint8, layer_features, load_folder
    from dgn.models import input_shape, load_classifier
    from dgn.render import save_png

    classifier = load_classifier(args.classifier, weights_dir=args.weights_dir)
    images = load_folder(args.images, input_shape(classifier)[1:], args.limit, args.per_class)
    features = layer_features(classifier, images.rgb, args.layer)
    t0 = time.perf_counter()
    options = {"perplexity": args.perplexity, "iterations": args.iterations} if args.method == "tsne" else {}
    positions = embed(features, args.method, args.seed, **options)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    picture = thumbnail_picture([_uint8(x) for x in images.rgb], positions, args.size, args.thumb, args.grid)
    save_png(out / "embedding.png", picture)
    labelled = all(y >= 0 for y in images.labels) and len(set(images.labels)) > 1
    purity = neighbour_purity(positions, images.labels) if labelled else None
    atomic_write_json(out / "embedding.json", {
        "classifier": args.classifier, "layer": args.layer, "method": args.method, "seed": args.seed,
        "perplexity": args.perplexity if args.method == "tsne" else None, "seconds": seconds,
        "nearest_neighbour_class_purity": purity,
        "points": [{"path": p, "label": y, "x": float(x), "y": float(yy)}
                   for p, y, (x, yy) in zip(images.paths, images.labels, positions)],
    })
    extra = f", nearest-neighbour class purity {purity:.3f}" if purity is not None else ""
    print(f"{args.method} of {len(images.paths)} images at {args.layer} in {seconds:.1f} s{extra} "
          f"-> {out / 'embedding.png'}")
    return 0
