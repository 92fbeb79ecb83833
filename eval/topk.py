"""``dgn topk`` throughput and memory on the 10,000 CIFAR-10 test JPEGs (cifar-caffenet).

Each measurement runs in its own process (peak resident memory is per process), in one run:

- all units of conv5, fc6, fc7 and fc8 in one pass vs one pass per layer: images per second and the ratio;
- the same all-layers pass over 2,000 vs 10,000 images: peak memory (flat when the per-unit heaps, not the
  activations, are what is kept);
- the all-layers pass with images decoded in the main process vs by ``--workers`` DataLoader processes ahead;
- where ``--examples-out`` is given, it also keeps that all-layers pass's output (the CIFAR world's
  examples, for ``dgn synthesize --topk`` and the README's figure).

    python eval/topk.py                      # about 3 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
LAYERS = ["conv5", "fc6", "fc7", "fc8"]


def worker(images: str, layers: list[str], limit: int, batch: int, k: int, out: str | None, workers: int = 0) -> dict:
    """One pass in this process: seconds, images per second, peak resident memory (MiB)."""
    sys.path.insert(0, str(REPO))
    from dgn.data import ImageFolderDataset
    from dgn.models import load_classifier
    from dgn.topk import ExampleFinder, write_examples

    dataset = ImageFolderDataset(images)
    paths, labels = dataset.paths[:limit], dataset.labels[:limit]
    classifier = load_classifier("cifar-caffenet")
    finder = ExampleFinder(classifier, layers, k=k)
    t0 = time.perf_counter()
    examples = finder.run(paths, batch_size=batch, workers=workers)
    seconds = time.perf_counter() - t0
    if out:
        write_examples(out, examples, finder, paths, images, [dataset.classes[i] for i in labels],
                       config={"batch_size": batch, "ranks": 1})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"layers": layers, "images": len(paths), "seconds": seconds, "images_per_s": len(paths) / seconds,
            "peak_rss_mib": rss}


def measure(images: Path, layers: list[str], limit: int, batch: int, k: int, out: str | None = None,
            workers: int = 0) -> dict:
    command = [sys.executable, __file__, "--worker", "--images", str(images), "--layers", ",".join(layers),
               "--limit", str(limit), "--batch-size", str(batch), "--k", str(k), "--workers", str(workers)]
    if out:
        command += ["--examples-out", out]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=None, help="CIFAR-10 test JPEGs in class folders (default: from the fixtures)")
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--limit", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--examples-out", default=None)
    p.add_argument("--workers", type=int, default=1, help="decoding processes of the last measurement (default 1)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    layers = args.layers.split(",")
    if args.worker:
        print(json.dumps(worker(args.images, layers, args.limit, args.batch_size, args.k, args.examples_out,
                                args.workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(args.images) if args.images else None
        if images is None:
            sys.path.insert(0, str(REPO))
            from tests.cifar import cifar_test_subset

            images = cifar_test_subset(FIXTURES, Path(tmp) / "cifar", every=1)
        together = measure(images, layers, args.limit, args.batch_size, args.k, args.examples_out)
        alone = [measure(images, [layer], args.limit, args.batch_size, args.k) for layer in layers]
        small = measure(images, layers, 2_000, args.batch_size, args.k)
        decoded = measure(images, layers, args.limit, args.batch_size, args.k, workers=args.workers)
    apart_s = sum(r["seconds"] for r in alone)
    print(f"dgn topk on {together['images']} CIFAR-10 test JPEGs, cifar-caffenet, k={args.k}, batch {args.batch_size}")
    print(f"  all of {'+'.join(layers)} in one pass: {together['seconds']:.1f} s, {together['images_per_s']:.0f} images/s, "
          f"peak {together['peak_rss_mib']:.0f} MiB")
    for r in alone:
        print(f"  {r['layers'][0]:<6} alone: {r['seconds']:.1f} s, {r['images_per_s']:.0f} images/s")
    print(f"  one layer at a time: {apart_s:.1f} s in all; one pass is x{apart_s / together['seconds']:.2f} faster")
    print(f"  memory: {small['peak_rss_mib']:.0f} MiB at {small['images']} images vs {together['peak_rss_mib']:.0f} MiB "
          f"at {together['images']}")
    print(f"  with {args.workers} decoding worker(s): {decoded['images_per_s']:.0f} images/s "
          f"(x{decoded['images_per_s'] / together['images_per_s']:.2f} against decoding in the main process)")
    report = {"decoded_by_workers": decoded, "together": together, "alone": alone, "small": small, "ratio_alone_over_together": apart_s / together["seconds"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
