"""Starting from a real image (#16 item 5): does maximising "ship" from a real ship keep that ship at first?

On the CIFAR-10 world, each held-out real ship (``split_indices`` of training/train_cifar_world.py) is
turned into a start code, by the prior's encoder (cifar-caffenet post-ReLU fc6, as the original's
``--init_file``) or by inversion (``--init-mode invert``); DGN-AM then maximises cifar-caffenet's
"ship" logit (fc8:8) from it, with the original's ``3_start_from_real_image.sh`` settings (30 steps,
lr 1 -> 1e-10, decay 0.99, 3-sigma bounds), the same with lr scaled to this prior's smaller code box,
and, for contrast, the default run (200 steps, lr 8).
Per step it prints, over the ships:

- judge: the share that ResNet-20 (akamaster, a network we did not train) calls "ship";
- to start: the RMS pixel distance (RGB 0..1) of the image to the start image G(code_0);
- to real: the same to the real photograph;
- own start: the share of ships whose image is nearer its own start image than any other ship's (is it
  still *that* ship? chance: 1 / ships);
- logit: the mean "ship" logit of cifar-caffenet.

Usage::

    .venv/bin/python eval/real_start.py [--ships 200] [--montage docs/real-start-cifar.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "training"))

from train_cifar_world import split_indices

from dgn import spaces, weights
from dgn.data import ImageFolderDataset, extract_archive, load_images
from dgn.demo import CLASSIFIER, GENERATOR, PAPER_BOUNDS, find_judge, judge_images
from dgn.models import load_classifier, load_generator
from dgn.nets.toy import CIFAR_CLASSES
from dgn.render import montage, save_png, to_uint8
from dgn.starts import encoder_of, start_codes
from dgn.synthesis import DGNAM, ActMaxSettings

SHIP = CIFAR_CLASSES.index("ship")
ARCHIVE = "data/cifar10_test_jpg/cifar10_test_jpg_full.tar.gz"
SHOWN_STEPS = (0, 1, 2, 5, 10, 15, 20, 29, 50, 100, 199)
ORIGINAL_FC6_3X_MEAN = 11.85  # mean of the original's act_range/3x/fc6.txt, the box its lr 1 was chosen in


def runs(bounds: torch.Tensor) -> dict[str, tuple[ActMaxSettings, str]]:
    """name: (settings, start mode). The original's lr 1 moves each code unit by 1 per step in a box of mean
    11.85; this prior's box is smaller, so the script is also run with lr scaled to it."""
    scaled = round(float(bounds.mean()) / ORIGINAL_FC6_3X_MEAN, 2)
    return {
        "script 3 as written (lr 1), encode": (ActMaxSettings(steps=30, lr_start=1.0), "encode"),
        f"script 3 at this prior's scale (lr {scaled}), encode": (ActMaxSettings(steps=30, lr_start=scaled), "encode"),
        f"script 3 at this prior's scale (lr {scaled}), invert": (ActMaxSettings(steps=30, lr_start=scaled), "invert"),
        "the default run (200 steps, lr 8), encode": (ActMaxSettings(), "encode"),
    }


def held_out_ships(fixtures: Path, work: Path, count: int) -> tuple[torch.Tensor, list[str]]:
    """The first ``count`` held-out ships of the CIFAR-10 world, RGB 0..1 (N, 3, 32, 32), and their ids."""
    root = work / "cifar10"
    if not root.exists():
        extract_archive(fixtures / ARCHIVE, root)
    folder = next(p.parent.parent for p in root.rglob("*.jpg"))
    dataset = ImageFolderDataset(folder)
    _, held = split_indices(dataset.labels, 800, 0)
    ships = [i for i in held if dataset.labels[i] == SHIP][:count]
    paths = [dataset.paths[i] for i in ships]
    return load_images(paths, 32), [str(p.relative_to(folder)) for p in paths]


def follow(dgnam: DGNAM, codes: torch.Tensor, bounds: torch.Tensor) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Run DGN-AM on "ship" from ``codes``; every step's images (the classifier's view) and logits."""
    rows = dgnam.plan([f"fc8:{SHIP}"], restarts=len(codes))
    images, logits = {}, {}
    param = dgnam.codes(bounds)

    def observe(step: int, iterate: torch.Tensor, values: torch.Tensor) -> None:
        with torch.no_grad():
            images[step] = param.to_image(iterate).cpu()
        logits[step] = values.cpu()

    dgnam.optimise(rows, bounds, codes=codes, observe=observe)
    return images, logits


def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(1).sqrt()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dgn-real-start"))
    parser.add_argument("--ships", type=int, default=200)
    parser.add_argument("--montage", type=Path, default=None, help="per run (in order), 4 ships: the real photo, then the image at steps 0, 5, 10, 29 (and 199)")
    args = parser.parse_args(argv)

    judge = find_judge()
    if judge is None:
        sys.exit("the ResNet-20 judge is not available (../shared/fixtures/torch/resnet_cifar10)")
    real, ids = held_out_ships(args.fixtures, args.work, args.ships)
    generator, classifier = load_generator(GENERATOR), load_classifier(CLASSIFIER)
    bounds = weights.load_bounds(PAPER_BOUNDS)
    space = classifier.space
    real_seen = spaces.convert(real, spaces.RGB01, space)
    real_judged = judge_images(judge, list(real_seen), space).count(SHIP)
    print(f"{len(ids)} held-out real ships of the CIFAR-10 world; the judge calls {real_judged} of them ship")
    encoder = encoder_of(generator)
    tiles, labels = [], []
    for name, (settings, mode) in runs(bounds).items():
        dgnam = DGNAM(generator, classifier, settings, "cpu")
        started = time.perf_counter()
        codes, errors = start_codes(dgnam.codes(bounds), real, mode, encoder if mode == "encode" else None)
        images, logits = follow(dgnam, codes, bounds)
        seconds = time.perf_counter() - started
        print(f"\n{name}: {settings.steps} steps, lr {settings.lr_start} -> {settings.lr_end:g}; start RMS error "
              f"{float(errors.mean()):.3f}; {seconds:.1f} s")
        print(f"{'step':>5} {'judge: ship':>12} {'to start':>9} {'to real':>8} {'own start':>10} {'logit':>7}")
        start_rgb = spaces.to_rgb01(images[0], space).clamp(0, 1)
        for step in [s for s in SHOWN_STEPS if s in images]:
            rgb = spaces.to_rgb01(images[step], space).clamp(0, 1)
            judged = judge_images(judge, list(images[step]), space).count(SHIP)
            own = torch.cdist(rgb.flatten(1), start_rgb.flatten(1)).argmin(1) == torch.arange(len(ids))
            print(f"{step:>5} {judged / len(ids):>11.0%} {float(rms(rgb, start_rgb).mean()):>9.3f} "
                  f"{float(rms(rgb, real).mean()):>8.3f} {float(own.float().mean()):>10.0%} "
                  f"{float(logits[step].mean()):>7.2f}")
        if args.montage is not None:
            shown = [s for s in (0, 5, 10, 29, 199) if s in images]
            for i in range(4):
                tiles += [to_uint8(real_seen[i], space, "mean")] + [to_uint8(images[s][i], space, "mean") for s in shown]
                labels += ["real"] + [f"step {s}" for s in shown]
                tiles += [tiles[-1] * 0 + 255] * (6 - len(shown) - 1)
                labels += [""] * (6 - len(shown) - 1)
    if args.montage is not None:
        save_png(args.montage, montage(tiles, labels, columns=6, tile=64))
        print(f"\nwrote {args.montage}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
