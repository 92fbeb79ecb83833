"""What bf16 changes in DGN-AM's results on the CIFAR world (the speed issue's fidelity goal), whatever its speed.

Runs the demo's settings for 200 steps on cifar-caffenet fc8:0-9 (``--restarts`` each) through the
cifar-deepsim-fc6 prior twice, in fp32 and in bf16 (autocast: the image and forward pass in bf16, the codes and
the act_max step in fp32), and prints per class and overall:

- the final activation each run reports (in its own precision), and the bf16 images re-scored in fp32;
- the ratio bf16 / fp32 of the mean final activation (goal: within 5%);
- the ResNet-20 judge's recognition of both sets (goal: equal within noise).

act_max's first steps are chaotic (see ``dgn.demo.QUICK_LR``), so bf16 gives *other* images from the same seed,
as another CPU does: compare the distributions, not image by image. On a CPU without native bf16 the bf16 run
uses PyTorch's reference kernels (about 3 minutes for 20 rows x 200 steps on 2 cores); speed is measured by
``eval/benchmark.py``, not here.

    python eval/bf16_fidelity.py [--restarts 2] [--seed 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgn import weights
from dgn.demo import BOUNDS, CLASSIFIER, DEMO_SETTINGS, GENERATOR, find_judge, judge_images
from dgn.layers import forward_to
from dgn.models import load_classifier, load_generator
from dgn.nets.toy import CIFAR_CLASSES
from dgn.synthesis import DGNAM, ActMaxSettings


def run(precision: str, restarts: int, seed: int, device: str) -> dict:
    """One precision's rows: final activations (own precision and fp32), images, seconds."""
    dgnam = DGNAM(load_generator(GENERATOR), load_classifier(CLASSIFIER),
                  ActMaxSettings(steps=200, precision=precision, **DEMO_SETTINGS), device)
    targets = [f"fc8:{i}" for i in range(len(CIFAR_CLASSES))]
    rows = dgnam.plan(targets, restarts, seed)
    start = time.perf_counter()
    result = dgnam.optimise(rows, upper_bound=weights.load_bounds(BOUNDS))
    seconds = time.perf_counter() - start
    whole = (0, 0, *dgnam.generator.space.size)
    images = dgnam.render(result.codes_last, [whole] * len(rows))
    with torch.no_grad():  # the same ruler for both: the classifier in fp32 on the final images
        logits = forward_to(dgnam.classifier.module, dgnam.image_for_classifier(result.codes_last.to(dgnam.device)),
                            ["fc8"])["fc8"].float().cpu()
    units = [row.target.unit for row in rows]
    return {"units": units, "act_end": result.act_end.float().cpu(),
            "fp32_score": logits[torch.arange(len(rows)), torch.tensor(units)], "images": images,
            "space": dgnam.generator.space, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    results = {precision: run(precision, args.restarts, args.seed, args.device) for precision in ("fp32", "bf16")}
    judge = find_judge()
    print(f"CIFAR world, fc8:0-9 x {args.restarts} restarts, seed {args.seed}, the demo's settings for 200 steps")
    print(f"{'class':<11} {'fp32 act':>9} {'bf16 act':>9} {'bf16 in fp32':>13} {'ratio':>6}")
    for c, name in enumerate(CIFAR_CLASSES):
        pick = [i for i, u in enumerate(results["fp32"]["units"]) if u == c]
        f, b = results["fp32"]["act_end"][pick].mean(), results["bf16"]["act_end"][pick].mean()
        rescored = results["bf16"]["fp32_score"][pick].mean()
        print(f"{name:<11} {f:9.2f} {b:9.2f} {rescored:13.2f} {rescored / f:6.2f}")
    f, b = results["fp32"]["act_end"].mean(), results["bf16"]["act_end"].mean()
    rescored = results["bf16"]["fp32_score"].mean()
    print(f"{'all':<11} {f:9.2f} {b:9.2f} {rescored:13.2f} {rescored / f:6.2f}  "
          f"(mean final activation; bf16 / fp32 = {b / f:.3f} as reported, {rescored / f:.3f} re-scored in fp32)")
    for precision, r in results.items():
        line = f"{precision}: {r['seconds']:.1f} s"
        if judge is not None:
            verdicts = judge_images(judge, r["images"], r["space"])
            hits = sum(v == u for v, u in zip(verdicts, r["units"]))
            line += f", judge recognises {hits} of {len(verdicts)} ({hits / len(verdicts):.0%})"
        print(line)


if __name__ == "__main__":
    main()
