"""``dgn inspect neighbours``: argument parsing and printing; the method is in :mod:`dgn.inspect.neighbours`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dgn.errors import DGNError
from dgn.inspect.neighbours import NearestNeighbours, load_folder, neighbour_montage


def add_cli_arguments(parser) -> None:
    """Options of ``dgn inspect neighbours``."""
    parser.add_argument("--images", required=True, help="folder of training images to search (class subfolders allowed)")
    parser.add_argument("--query", required=True, nargs="+", help="query image file(s) or a folder of them")
    parser.add_argument("--layer", default="fc7", help="layer whose features are compared, or 'pixel' (default fc7)")
    parser.add_argument("--k", type=int, default=8, help="neighbours per query (default 8)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--per-class", type=int, default=None, help="use only the first N images of each class")
    parser.add_argument("--query-limit", type=int, default=8, help="at most this many queries (default 8)")
    parser.add_argument("--classifier", default="cifar-caffenet", help="classifier name (default: cifar-caffenet)")
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")
    parser.add_argument("--out", required=True, help="output directory (neighbours.png, neighbours.json)")


def _query_paths(items: Sequence[str], limit: int) -> list[str]:
    from dgn.data import IMAGE_EXTENSIONS, ImageFolderDataset

    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += [str(q) for q in ImageFolderDataset(p).paths]
        elif p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            paths.append(str(p))
        else:
            raise DGNError(f"--query {item} is neither an image file ({', '.join(IMAGE_EXTENSIONS)}) nor a folder")
    return paths[:limit]


def run_cli(args) -> int:
    """Write the query/neighbour montage and the distances."""
    import time

    from dgn.data import load_images
    from dgn.files import atomic_write_json
    from dgn.models import input_shape, load_classifier
    from dgn.render import save_png

    classifier = load_classifier(args.classifier, weights_dir=args.weights_dir)
    size = input_shape(classifier)[1:]
    train = load_folder(args.images, size, args.limit, args.per_class)
    query_paths = _query_paths(args.query, max(1, args.query_limit))
    queries = load_images(query_paths, size)
    t0 = time.perf_counter()
    search = NearestNeighbours(classifier, args.layer).fit(train.rgb)
    result = search.query(queries, args.k)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    names = [train.classes[y] if y >= 0 else Path(p).stem for p, y in zip(train.paths, train.labels)]
    save_png(out / "neighbours.png", neighbour_montage(
        queries, train.rgb, result, query_labels=[f"{Path(p).parent.name}/{Path(p).name}" for p in query_paths],
        base_labels=names))
    atomic_write_json(out / "neighbours.json", {
        "classifier": args.classifier, "layer": args.layer, "k": int(result.indices.shape[1]),
        "train_images": len(train.paths), "seconds": seconds,
        "queries": [{"path": q, "neighbours": [{"path": train.paths[int(j)], "distance": float(d)}
                                               for j, d in zip(result.indices[i], result.distances[i])]}
                    for i, q in enumerate(query_paths)],
    })
    print(f"{len(query_paths)} queries x {result.indices.shape[1]} neighbours among {len(train.paths)} images "
          f"at {args.layer} in {seconds:.2f} s -> {out / 'neighbours.png'}")
    return 0
