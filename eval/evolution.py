"""Black-box evolution on the CIFAR-10 world: GA and CMA-ES against gradient act_max and the best real image.

For the 10 output units and the demo's 8 hidden units of ``cifar-caffenet`` through the ``cifar-deepsim-fc6``
prior (its registered code box, the same for every method), with ``--evaluations`` scored images per unit:

- the best score each optimiser reaches, beside gradient act_max (200 steps, the original's settings) and the
  unit's highest activation over 2,000 real CIFAR-10 test images; how many output units' evolved images
  beat the best real image; the share of evolved output-unit images the ResNet-20 judge (a network we did
  not train) puts in the unit's class;
- the same for the output units with the scorer's noise at ``--snr`` (Gaussian; SNR 1 is noise as large as
  the spread of the unit's responses to the first, random generation): the best code is chosen by noisy
  scores, and its *clean* score is what is reported;
- throughput: 16 units evolved in one batched run vs one at a time (``--throughput-evaluations`` each), scored
  images per second and the ratio.

It writes ``--out``/strips.png (the best image every few generations, one line per output unit and
optimiser) and results.json. Reading the real images and the judge needs ``../shared/fixtures``.

    python eval/evolution.py --out /tmp/evolution              # about 25 min on 2 CPU cores
    python eval/evolution.py --evaluations 1000 --out /tmp/ev  # a quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "eval"))

from compare import cifar_class, judge_scores, real_max

from dgn import spaces, weights
from dgn.demo import CLASSIFIER, GENERATOR, HIDDEN_TARGETS, find_judge
from dgn.evolve import Evolution, EvolutionSettings
from dgn.files import atomic_write_json
from dgn.models import load_classifier, load_generator
from dgn.render import montage, save_png, to_uint8
from dgn.synthesis import DGNAM
from tests.cifar import cifar_test_subset

FIXTURES = REPO.parent / "shared" / "fixtures"
OUTPUTS = [f"fc8:{i}" for i in range(10)]


def images_for_judge(method, codes: torch.Tensor) -> torch.Tensor:
    """The classifier's view of G(codes) (in the classifier's space), in chunks."""
    with torch.no_grad():
        return torch.cat([spaces.convert(method.generator(codes[i : i + 64]), method.generator.space,
                                         method.classifier.space).float().cpu() for i in range(0, len(codes), 64)])


def summarise(name: str, rows, scores: torch.Tensor, images: torch.Tensor, real: torch.Tensor, judge, classifier,
              wall: float, images_scored: int) -> dict:
    outputs = [i for i, r in enumerate(rows) if str(r.target).startswith("fc8")]
    classes = [cifar_class(rows[i].target, classifier) for i in outputs]
    entry = {"method": name, "scores": scores.tolist(), "wall_s": wall, "images_scored": images_scored,
             "beat_real_outputs": int((scores[outputs] > real[outputs]).sum()), "outputs": len(outputs),
             "mean_over_real": float((scores / real.clamp_min(1e-6)).mean())}
    if judge is not None:
        entry["judge"] = judge_scores(judge, images[outputs], classifier.space, classes, torch.device("cpu"))
    return entry


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--evaluations", type=int, default=10_000, help="scored images per unit (default 10000)")
    p.add_argument("--snr", type=float, default=1.0, help="signal-to-noise ratio of the noisy runs (default 1)")
    p.add_argument("--throughput-units", type=int, default=16)
    p.add_argument("--throughput-evaluations", type=int, default=1000)
    p.add_argument("--skip", action="append", default=[], choices=["optimisers", "noise", "throughput", "gradient"])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator, classifier = load_generator(GENERATOR), load_classifier(CLASSIFIER)
    bounds, bounds_label = weights.resolve_bounds(None, GENERATOR, 512)
    targets = OUTPUTS + list(HIDDEN_TARGETS)
    judge = find_judge()
    with tempfile.TemporaryDirectory() as tmp:
        folder = cifar_test_subset(FIXTURES, Path(tmp))
        planner = Evolution(generator, classifier, EvolutionSettings(), "cpu")
        rows = planner.plan(targets)
        real = real_max(classifier, [r.target for r in rows], folder, 2000, torch.device("cpu"))
    print(f"CIFAR-10 world: {CLASSIFIER} through {GENERATOR}, code box {bounds_label}; {len(targets)} units; "
          f"{args.evaluations} scored images per unit; real reference: the best of 2,000 CIFAR-10 test images")
    results, strips = [], []
    for optimizer in ("ga", "cmaes") if "optimisers" not in args.skip else ():
        evolution = Evolution(generator, classifier, EvolutionSettings(optimizer=optimizer,
                                                                       evaluations=args.evaluations), "cpu")
        t0 = time.perf_counter()
        result = evolution.evolve(targets, batch_size=len(targets), upper_bound=bounds)
        wall = time.perf_counter() - t0
        scored = evolution.settings.generations * evolution.settings.population_size * len(targets)
        results.append(summarise(optimizer, result.rows, result.act_best, images_for_judge(evolution, result.codes_best),
                                 real, judge, classifier, wall, scored))
        for i in range(len(OUTPUTS)):
            picks = torch.linspace(0, len(result.strip_steps) - 1, 9).round().long().tolist()
            for k in picks:
                image = evolution.render(result.strip_codes[i][k][None], [result.view_boxes[i]])[0]
                label = f"{optimizer} {targets[i]}" if k == 0 else f"g{result.strip_steps[k]}"
                strips.append((label, to_uint8(image, generator.space, "mean")))
            image = evolution.render(result.codes_best[i : i + 1], [result.view_boxes[i]])[0]
            strips.append((f"best {float(result.act_best[i]):.3g}", to_uint8(image, generator.space, "mean")))
    if "gradient" not in args.skip:
        dgnam = DGNAM(generator, classifier, device="cpu")
        t0 = time.perf_counter()
        grad = dgnam.synthesize(targets, batch_size=len(targets), upper_bound=bounds)
        wall = time.perf_counter() - t0
        results.append(summarise("act_max (gradient, 200 steps)", grad.rows, grad.act_best,
                                 images_for_judge(dgnam, grad.codes_best), real, judge, classifier, wall,
                                 200 * len(targets)))
    if "noise" not in args.skip:
        for optimizer in ("ga", "cmaes"):
            settings = EvolutionSettings(optimizer=optimizer, evaluations=args.evaluations, noise=f"gaussian:{args.snr:g}")
            evolution = Evolution(generator, classifier, settings, "cpu")
            t0 = time.perf_counter()
            result = evolution.evolve(OUTPUTS, batch_size=len(OUTPUTS), upper_bound=bounds)
            wall = time.perf_counter() - t0
            scored = settings.generations * settings.population_size * len(OUTPUTS)
            entry = summarise(f"{optimizer}, noise SNR {args.snr:g}", result.rows, result.clean_best,
                              images_for_judge(evolution, result.codes_best), real[: len(OUTPUTS)], judge, classifier,
                              wall, scored)
            results.append(entry)
    print(f"\n{'method':<32} {'outputs > best real':>19} {'mean / real':>11} {'judge top1':>10} {'wall s':>7} "
          f"{'images/s':>9}")
    for e in results:
        j = (e.get("judge") or {}).get("top1")
        print(f"{e['method']:<32} {e['beat_real_outputs']:>12}/{e['outputs']:<6} {e['mean_over_real']:>11.2f} "
              f"{'-' if j is None else f'{j:.0%}':>10} {e['wall_s']:>7.0f} {e['images_scored'] / e['wall_s']:>9.0f}")
    print("\nper unit (best score; real = the best of 2,000 real images):")
    print(f"{'unit':<10} {'real':>7} " + " ".join(f"{e['method'][:14]:>14}" for e in results))
    for i, t in enumerate(targets):
        print(f"{t:<10} {float(real[i]):>7.2f} " + " ".join(
            f"{e['scores'][i]:>14.2f}" if i < len(e["scores"]) else f"{'':>14}" for e in results))
    if "throughput" not in args.skip:
        units = (OUTPUTS + list(HIDDEN_TARGETS))[: args.throughput_units]
        settings = EvolutionSettings(optimizer="ga", evaluations=args.throughput_evaluations)
        evolution = Evolution(generator, classifier, settings, "cpu")
        evolution.evolve(units[:1], batch_size=1, upper_bound=bounds)  # warm up
        t0 = time.perf_counter()
        evolution.evolve(units, batch_size=len(units), upper_bound=bounds)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        evolution.evolve(units, batch_size=1, upper_bound=bounds)
        alone = time.perf_counter() - t0
        single = Evolution(generator, classifier, EvolutionSettings(optimizer="ga", evaluations=args.throughput_evaluations,
                                                                    score_batch=1), "cpu")
        t0 = time.perf_counter()
        single.evolve(units, batch_size=1, upper_bound=bounds)
        one_image = time.perf_counter() - t0
        n = settings.generations * settings.population_size * len(units)
        print(f"\nthroughput, {len(units)} units x {n // len(units)} images (GA, population 20), scored images/s:")
        print(f"  all units in one batched run          {n / batched:>7.0f}")
        print(f"  one unit at a time (population batched) {n / alone:>5.0f}   batched is {alone / batched:.1f}x faster")
        print(f"  one unit, one image per forward (XDream) {n / one_image:>4.0f}   batched is {one_image / batched:.1f}x faster")
        results.append({"method": "throughput", "units": len(units), "batched_images_per_s": n / batched,
                        "alone_images_per_s": n / alone, "one_image_per_forward_images_per_s": n / one_image,
                        "ratio": alone / batched, "ratio_one_image": one_image / batched})
    if strips:
        labels, images = zip(*strips)
        save_png(out / "strips.png", montage(list(images), list(labels), columns=9 + 1, tile=64))
    atomic_write_json(out / "results.json", {"targets": targets, "real_max": real.tolist(), "bounds": bounds_label,
                                             "evaluations": args.evaluations, "results": results})
    print(f"\nwrote {out / 'results.json'}" + (f" and {out / 'strips.png'}" if strips else ""))


if __name__ == "__main__":
    main()
