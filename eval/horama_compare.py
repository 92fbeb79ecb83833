"""Our MACO and Fourier presets against horama's (Fel et al.'s toolbox, the reference implementation of MACO)
on the same model, targets and step count, in one run.

horama is not a dependency of dgn: install it only for this benchmark, e.g.::

    pip install --target /tmp/horama-lib horama einops matplotlib   # then remove its copies of torch and numpy
    PYTHONPATH=/tmp/horama-lib python eval/horama_compare.py --out /tmp/horama

For each method it reports throughput in target-steps per second (ours: all targets in one batched run; horama:
one call per target, as its README calls it; horama's buffers hold one image, so it has no batched form to
build by hand) and the final activation each image reaches, measured the same way for both: the pre-ReLU unit
over the same 16 MACO-style crops of each canvas, resized to the model's input (an input-sized image whole). Both MACOs use the same magnitude template, the CIFAR world's
that dgn ships (horama would download its ImageNet one at run time; it is given ours as its local file), and
the same canvas and crop geometry (``--canvas`` input sides, crops of 20-25% of it); horama's Fourier is its
own (decay 1.5, the MACO crops), ours is Lucid's (decay 1, jitter / scale / rotate): each at its defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")  # horama draws a progress bar per call; before tqdm is first imported
sys.path.insert(0, str(REPO))

from dgn import spaces
from dgn.baseline import ImageAM, preset
from dgn.files import atomic_write_json
from dgn.maco import shipped_magnitude
from dgn.models import load_classifier
from dgn.render import montage, save_png, to_uint8
from dgn.targets import expand_targets, parse_target


def run_ours(am: ImageAM, targets: list[str], seed: int) -> tuple[torch.Tensor, float]:
    """(images in the classifier's space, wall seconds) of one batched run."""
    t0 = time.perf_counter()
    result = am.synthesize(targets, 1, seed, batch_size=len(targets))
    return result.codes_last, time.perf_counter() - t0


def seen_activation(module, space, images: torch.Tensor, units: list[int], crops: int = 16, seed: int = 0) -> torch.Tensor:
    """Each canvas's unit as the MACO geometry shows it to the model: the mean over ``crops`` square crops
    (side 20-25% of the canvas, centre 0.5 + 0.15 N(0, 1); the same crops for every method), resized to the
    input. A canvas of the input's size is seen whole."""
    side = space.size[0]
    if images.shape[-1] == side:
        with torch.no_grad():
            return module(images)[torch.arange(len(units)), units].float()
    g = torch.Generator().manual_seed(seed)
    s = images.shape[-1]
    values = []
    for _ in range(crops):
        w = int(s * (0.2 + 0.05 * float(torch.rand(1, generator=g))))
        cy, cx = (0.5 + 0.15 * torch.randn(2, generator=g)).clamp(0.1, 0.9).tolist()
        top, left = min(max(0, int(cy * s - w / 2)), s - w), min(max(0, int(cx * s - w / 2)), s - w)
        crop = spaces.fit(images[..., top : top + w, left : left + w], space.size, "resize")
        with torch.no_grad():
            values.append(module(crop)[torch.arange(len(units)), units].float())
    return torch.stack(values).mean(0)


def run_horama(kind: str, model_rgb01, units: list[int], steps: int, canvas: int, input_side: int,
               seed: int) -> tuple[torch.Tensor, float]:
    """(RGB 0..1 canvases (N, 3, S, S), wall seconds) of one horama call per unit, as its README shows."""
    import horama

    run = horama.maco if kind == "maco" else horama.fourier
    images, wall = [], 0.0
    for i, unit in enumerate(units):
        torch.manual_seed(seed + i)

        def objective(crops: torch.Tensor, unit: int = unit) -> torch.Tensor:
            return model_rgb01(crops)[:, unit].mean()

        t0 = time.perf_counter()
        # values_range (0, 1): RGB 0..1, which the wrapper maps into the model's space; noise 0.01 of that range
        # is horama's 0.05 of its default (-2.5, 2.5).
        image, _ = run(objective, total_steps=steps, image_size=canvas * input_side, model_input_size=input_side,
                       values_range=(0.0, 1.0), noise=0.01, device="cpu")
        wall += time.perf_counter() - t0
        images.append(image.detach())
    return torch.stack(images), wall


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classifier", default="cifar-caffenet")
    p.add_argument("--target", default="fc8:0-9", help="fc8 units (horama's objective takes the model's output)")
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--canvas", type=int, default=5, help="canvas side in input sides (horama: 1280 / 224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    classifier = load_classifier(args.classifier)
    module = classifier.module.eval()
    for q in module.parameters():
        q.requires_grad_(False)
    space = classifier.space
    side = space.size[0]
    targets = expand_targets(args.target)
    units = [parse_target(t).unit for t in targets]

    def model_rgb01(x: torch.Tensor) -> torch.Tensor:
        return module(spaces.from_rgb01(spaces.fit(x, space.size, "resize"), space))

    report: dict = {"config": vars(args), "threads": torch.get_num_threads(), "methods": {}}
    tiles, labels = [], []
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        # horama reads its magnitude template from spectrum_decorrelated.npy in the working directory
        np.save(Path(work) / "spectrum_decorrelated.npy", shipped_magnitude().numpy())
        os.chdir(work)
        try:
            for kind in ("maco", "fourier"):
                settings = replace(preset(kind), steps=args.steps)
                if kind == "maco":
                    settings = replace(settings, canvas=args.canvas, crop_box=(0.2, 0.25))
                am = ImageAM(classifier, settings, "cpu")
                ours, wall_ours = run_ours(am, targets, args.seed)
                theirs_rgb, wall_theirs = run_horama(kind, model_rgb01, units, args.steps, args.canvas, side,
                                                     args.seed)
                theirs = spaces.from_rgb01(theirs_rgb, space.with_size(None))
                act_ours = seen_activation(module, space, ours, units)
                act_theirs = seen_activation(module, space, theirs, units)
                n = len(targets) * args.steps
                entry = {
                    "ours_target_steps_per_s": n / wall_ours, "horama_target_steps_per_s": n / wall_theirs,
                    "speed_ratio": wall_theirs / wall_ours,
                    "ours_act_mean": float(act_ours.mean()), "horama_act_mean": float(act_theirs.mean()),
                    "act_ratio": float(act_ours.mean() / act_theirs.mean()),
                    "ours_act": act_ours.tolist(), "horama_act": act_theirs.tolist(),
                    "ours_wall_s": wall_ours, "horama_wall_s": wall_theirs,
                }
                report["methods"][kind] = entry
                print(f"{kind:<8} ours {entry['ours_target_steps_per_s']:8.1f} target-steps/s, act {entry['ours_act_mean']:7.2f} | "
                      f"horama {entry['horama_target_steps_per_s']:8.1f} target-steps/s, act {entry['horama_act_mean']:7.2f} | "
                      f"speed x{entry['speed_ratio']:.2f}, act x{entry['act_ratio']:.2f}", flush=True)
                for i, t in enumerate(targets):
                    tiles += [to_uint8(ours[i], space, "mean"), to_uint8(theirs[i], space, "mean")]
                    labels += [f"ours {kind} {t} {float(act_ours[i]):.3g}",
                               f"horama {kind} {t} {float(act_theirs[i]):.3g}"]
        finally:
            os.chdir(here)
    save_png(out / "side_by_side.png", montage(tiles, labels, columns=4))
    atomic_write_json(out / "results.json", report)
    print(f"{len(targets)} targets x {args.steps} steps on {args.classifier}, {report['threads']} CPU threads; "
          f"wrote {out / 'side_by_side.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
