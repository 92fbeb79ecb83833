"""Multifaceted starts vs random restarts on the CIFAR-10 world (Nguyen, Yosinski & Clune 2016).

For the 10 output units of ``cifar-caffenet`` through ``cifar-deepsim-fc6`` with ``dgn demo``'s settings,
``--restarts`` restarts per unit start either from random codes (the seeds, as usual) or from the k-means
centres of the encoder codes of the unit's ``--top`` best CIFAR-10 test images (``dgn topk`` over the 10,000
test JPEGs). It reports, per start kind:

- the final activation (mean over rows);
- diversity: the mean pairwise fc7 distance between a unit's restarts; and between the real images nearest
  to each restart (in fc7, over the 10,000 images), with how many distinct nearest images the restarts have;
- the ResNet-20 judge's recognition of the images.

    python eval/multifaceted.py --out /tmp/facets     # about 5 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "eval"))

from compare import cifar_class, judge_scores, layer_features, mean_pairwise_distance

from dgn import spaces, weights
from dgn.data import ImageFolderDataset
from dgn.demo import BOUNDS, CLASSIFIER, DEMO_SETTINGS, DEMO_STEPS, GENERATOR, find_judge
from dgn.files import atomic_write_json
from dgn.models import load_classifier, load_generator
from dgn.render import montage, save_png, to_uint8
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.topk import ExampleFinder, TopExamples, multifaceted_starts, write_examples
from tests.cifar import cifar_test_subset

FIXTURES = REPO.parent / "shared" / "fixtures"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--top", type=int, default=50, help="top images clustered per unit")
    p.add_argument("--steps", type=int, default=DEMO_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    classifier = load_classifier(CLASSIFIER)
    generator = load_generator(GENERATOR)
    upper = weights.load_bounds(BOUNDS)
    dgnam = DGNAM(generator, classifier, ActMaxSettings(steps=args.steps, **DEMO_SETTINGS), "cpu")
    targets = [f"fc8:{i}" for i in range(10)]
    rows = dgnam.plan(targets, args.restarts, args.seed)
    judge = find_judge(None)
    with tempfile.TemporaryDirectory() as tmp:
        root = cifar_test_subset(FIXTURES, Path(tmp) / "cifar", every=1)
        dataset = ImageFolderDataset(root)
        finder = ExampleFinder(classifier, ["fc8"], k=args.top)
        found = finder.run(dataset.paths, batch_size=256)
        write_examples(Path(tmp) / "topk", found, finder, dataset.paths, root, config={"classifier": CLASSIFIER})
        examples = TopExamples.read(Path(tmp) / "topk")
        real = torch.cat([spaces.from_rgb01(finder.load(dataset.paths[i : i + 500]), classifier.space)
                          for i in range(0, len(dataset.paths), 500)])
        real_fc7 = layer_features(classifier, real, "fc7", "cpu")
        facets, _ = multifaceted_starts(dgnam.codes(upper), examples, rows, args.top, args.seed)
        results = {}
        for kind, start in (("random", None), ("multifaceted", facets)):
            result = dgnam.synthesize(targets, args.restarts, args.seed, batch_size=40, upper_bound=upper, start=start)
            with torch.no_grad():
                images = dgnam.image_for_classifier(result.codes_last).float()
            features = layer_features(classifier, images, "fc7", "cpu")
            nearest = torch.cdist(features, real_fc7).argmin(1)
            groups = [[i for i, r in enumerate(rows) if r.label == t] for t in targets]
            classes = [cifar_class(r.target, classifier) for r in rows]
            entry = {
                "act_end_mean": float(result.act_end.mean()),
                "diversity_fc7": mean_pairwise_distance(features, groups),
                "nearest_real_diversity_fc7": mean_pairwise_distance(real_fc7[nearest], groups),
                "distinct_nearest_per_unit": float(np.mean([len(set(nearest[g].tolist())) for g in groups])),
                "judge": judge_scores(judge, images, classifier.space, classes, "cpu") if judge is not None else None,
            }
            results[kind] = entry
            tiles = [to_uint8(im, classifier.space, "mean") for im in images]
            labels = [f"{r.label} r{r.restart} {float(a):.3g}" for r, a in zip(rows, result.act_end)]
            save_png(out / f"{kind}.png", montage(tiles, labels, columns=args.restarts, tile=64))
            print(f"{kind:<13} act {entry['act_end_mean']:6.2f}  restart fc7 distance {entry['diversity_fc7']:6.2f}  "
                  f"nearest real images' fc7 distance {entry['nearest_real_diversity_fc7']:6.2f}  distinct nearest "
                  f"{entry['distinct_nearest_per_unit']:.2f}/{args.restarts}  judge top-1 "
                  f"{(entry['judge'] or {}).get('top1', float('nan')):.2f}", flush=True)
    atomic_write_json(out / "results.json", {"config": vars(args), "results": results})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
