"""Does the prior show the network or itself? The DGN-AM supplement's sanity experiments on the CIFAR world.

Classifiers of the shipped ``cifar-caffenet`` architecture are trained with the recipe of
training/train_cifar_world.py (AdamW, cosine schedule, crops + flips; ``--epochs`` each, the shipped net had
60) on the 8,000 training images of its split: (normal) as they are, the control; (brg) BRG-swapped (the
image's R, G, B channels hold its B, R, G); (blur) Gaussian-blurred, sigma 1 px (5x5 kernel) at 32x32;
(cut-up) the four 16x16 quarters of each image shuffled (a seeded permutation per image); (10%) and (25%)
of the images (stratified, seeded), trained for the same number of gradient steps as the full set (+-1%).
The shipped ``cifar-deepsim-fc6`` prior, trained for the shipped classifier, stays fixed, with the demo's
1-sigma code box; DGN-AM with ``dgn demo``'s settings (400 steps, jitter / flip / rescale) visualises each
net's 10 output units, ``--restarts`` images each. Then a cascading model randomisation (Adebayo et al. 2018)
of the shipped classifier: fc8, then fc7, then fc6 re-initialised in turn (the architecture's own init).

Measures (the judge: ResNet-20, a CIFAR-10 network we did not train):

- every net: held-out accuracy (held-out images transformed as its training images) and the judge's
  recognition of its synthetic images;
- brg: per-class channel means of the synthetic images; the correlation of their chroma (channel mean minus
  the class's grey mean, 30 numbers) with that of the normal and of the BRG-swapped training images; the
  judge's recognition after swapping the channels back;
- blur: high-frequency energy: variance of the Laplacian of the grey image (0..255) and the share of the
  spectrum's power above 0.25 cycles/px;
- cut-up: the judge's recognition, and global structure as the correlation of pixels across the quarter
  seams (rows/cols 15|16) beside that across neighbouring lines inside the quarters (7|8, 23|24);
- 10% / 25% / 100%: held-out accuracy beside the judge's recognition;
- randomisation: per stage, the mean distance of the preferred images to the trained net's from the same
  start codes (pixel RMS in RGB 0..1, and L2 in the trained net's pre-ReLU fc7), beside baselines: the
  trained net from other start codes (seed 1000), the normal net retrained here from the same starts, and
  the trained net's images of another class (unit u+1).

Trained nets are cached in ``--work`` (git-ignored ``out/prior-sanity`` by default), so a rerun only
synthesises. Usage:

    nice -n 10 .venv/bin/python eval/prior_sanity.py [--epochs 20] [--restarts 4] [--json out.json] \\
        [--montage docs/prior-sanity-nets.png --cascade-montage docs/prior-sanity-cascade.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "training"))

from safetensors.torch import load_file, save_file
from train_cifar_world import ARCHIVE, split_indices

from dgn import spaces, weights
from dgn.data import ImageFolderDataset, extract_archive, load_images
from dgn.demo import BOUNDS, DEMO_SETTINGS, DEMO_STEPS, GENERATOR, find_judge, judge_images
from dgn.files import atomic_write_json
from dgn.layers import forward_to
from dgn.models import Classifier, load_classifier, load_generator
from dgn.nets.toy import CIFAR_CAFFE_32, CIFAR_CLASSES, cifar_caffenet
from dgn.render import montage, save_png
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.training import evaluate_classifier, train_classifier

FIXTURES = REPO.parent / "shared" / "fixtures"
BRG = [2, 0, 1]  # new channel c holds old channel BRG[c]: R <- B, G <- R, B <- G
BACK = [1, 2, 0]  # undoes BRG
BATCH = 128  # train_classifier's default batch size
GREY = (0.299, 0.587, 0.114)
Transform = Callable[[torch.Tensor], torch.Tensor]


# ----- transforms of images (N, 3, H, W), RGB 0..1 ------------------------------------------------------
def brg(x: torch.Tensor) -> torch.Tensor:
    """Images with their R, G, B channels holding B, R, G."""
    return x[:, BRG]


def swap_back(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`brg`."""
    return x[:, BACK]


def blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur with ``sigma`` px (separable kernel of 2 * ceil(2 sigma) + 1 taps, reflected edges)."""
    half = math.ceil(2 * sigma)
    taps = torch.exp(-torch.arange(-half, half + 1, dtype=x.dtype).pow(2) / (2 * sigma**2))
    taps = (taps / taps.sum()).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, K)
    x = F.pad(x, (half, half, half, half), mode="reflect")
    x = F.conv2d(x, taps, groups=x.shape[1])
    return F.conv2d(x, taps.transpose(-1, -2), groups=x.shape[1])


def cut_up(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each image's four quarters shuffled (a seeded permutation per image; 1 in 24 stays as it was)."""
    n, _, h, w = x.shape
    a, b = h // 2, w // 2
    stacked = torch.stack([x[..., :a, :b], x[..., :a, b:], x[..., a:, :b], x[..., a:, b:]], 1)
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(n)])
    s = stacked[torch.arange(n)[:, None], order]
    return torch.cat([torch.cat([s[:, 0], s[:, 1]], -1), torch.cat([s[:, 2], s[:, 3]], -1)], -2)


# ----- measures ----------------------------------------------------------------------------------------
def grey255(x: torch.Tensor) -> torch.Tensor:
    """Grey images (N, H, W) on the 0..255 scale (Rec. 601 weights)."""
    return (x * 255 * torch.tensor(GREY, dtype=x.dtype).view(1, 3, 1, 1)).sum(1)


def laplacian_variance(x: torch.Tensor) -> torch.Tensor:
    """Per image: the variance of the 4-neighbour Laplacian of its grey image (0..255), valid pixels only."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype).view(1, 1, 3, 3)
    return F.conv2d(grey255(x).unsqueeze(1), kernel).flatten(1).var(1)


def high_frequency_share(x: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per image: the share of the grey image's spectral power (mean removed) above ``cutoff`` cycles/px."""
    g = grey255(x)
    g = g - g.mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(g).abs().pow(2)
    fy = torch.fft.fftfreq(g.shape[-2]).view(-1, 1)
    fx = torch.fft.fftfreq(g.shape[-1]).view(1, -1)
    high = (fy.pow(2) + fx.pow(2)).sqrt() > cutoff
    total = power.sum((-2, -1))
    return torch.where(total > 0, (power * high).sum((-2, -1)) / total.clamp_min(1e-12), torch.zeros_like(total))


def line_correlation(x: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """Pearson correlation of pixel values across pairs of adjacent lines (rows and, likewise, columns).

    For each (i, j) in ``pairs`` the values of row i are paired with those of row j, and those of column i
    with column j, over all images and channels; one correlation over all the pairs.
    """
    a = torch.cat([torch.cat([x[..., i, :].flatten(), x[..., :, i].flatten()]) for i, _ in pairs])
    b = torch.cat([torch.cat([x[..., j, :].flatten(), x[..., :, j].flatten()]) for _, j in pairs])
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def seam_correlation(x: torch.Tensor) -> tuple[float, float]:
    """(across the quarter seams, across neighbouring lines inside the quarters): low seam / inside = cut up."""
    h = x.shape[-1] // 2
    q = h // 2
    return line_correlation(x, [(h - 1, h)]), line_correlation(x, [(q - 1, q), (h + q - 1, h + q)])


def class_channel_means(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(10, 3): the mean R, G, B of the images of each class."""
    return torch.stack([x[labels == c].mean((0, 2, 3)) for c in range(len(CIFAR_CLASSES))])


def chroma_correlation(means: torch.Tensor, reference: torch.Tensor) -> float:
    """Correlation of two (classes, 3) channel-mean tables after removing each class's grey level (chroma)."""
    a = (means - means.mean(1, keepdim=True)).flatten()
    b = (reference - reference.mean(1, keepdim=True)).flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


# ----- nets -------------------------------------------------------------------------------------------
def subset(y: torch.Tensor, share: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a stratified ``share`` of the labels (per class a seeded permutation)."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(len(CIFAR_CLASSES)):
        members = torch.nonzero(y == c).flatten()
        keep.append(members[torch.randperm(len(members), generator=g)[: round(len(members) * share)]])
    return torch.cat(keep).sort().values


def epochs_for(n: int, epochs: int, full: int = 8000) -> int:
    """Epochs over ``n`` images giving the gradient steps of ``epochs`` epochs over ``full`` images."""
    return max(1, round(epochs * math.ceil(full / BATCH) / math.ceil(n / BATCH)))


def identity(x: torch.Tensor) -> torch.Tensor:
    """No change."""
    return x


def variants(x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor, Transform]]:
    """name -> (training images, labels, the transform of the net's inputs)."""
    k10, k25 = subset(y, 0.10), subset(y, 0.25)
    return {"normal": (x, y, identity), "brg": (brg(x), y, brg), "blur": (blur(x), y, blur),
            "cut-up": (cut_up(x), y, cut_up), "10%": (x[k10], y[k10], identity),
            "25%": (x[k25], y[k25], identity)}  # fmt: skip


def trained(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int, work: Path) -> tuple[torch.nn.Module, dict]:
    """A cifar-caffenet trained on (x, y) for the gradient steps of ``epochs`` epochs over 8,000 images (cached)."""
    path = work / f"{name.replace('%', 'pct')}-e{epochs}.safetensors"
    torch.manual_seed(0)
    model = cifar_caffenet()
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.eval(), json.loads(path.with_suffix(".json").read_text())
    n_epochs = epochs_for(len(x), epochs)
    start = time.perf_counter()
    history = train_classifier(model, x, y, CIFAR_CAFFE_32, n_epochs, seed=0, device="cpu")
    info = {"epochs": n_epochs, "steps": n_epochs * math.ceil(len(x) / BATCH),
            "train_seconds": round(time.perf_counter() - start, 1), "train_accuracy": history[-1].accuracy}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    atomic_write_json(path.with_suffix(".json"), info)
    return model.eval(), info


def cascade(module: torch.nn.Module, layers: list[str], seed: int = 1) -> torch.nn.Module:
    """A copy of ``module`` with ``layers`` re-initialised as a fresh cifar-caffenet (seeded) initialises them."""
    torch.manual_seed(seed)
    fresh = cifar_caffenet()
    out = cifar_caffenet()
    out.load_state_dict(module.state_dict())
    for name in layers:
        getattr(out, name).load_state_dict(getattr(fresh, name).state_dict())
    return out.eval()


# ----- synthesis and judging --------------------------------------------------------------------------
def preferred(module: torch.nn.Module, restarts: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """DGN-AM images (RGB 0..1, unit-major) of fc8:0-9 through the shipped prior with the demo's settings."""
    classifier = Classifier(module.eval(), CIFAR_CAFFE_32, "cifar-caffenet")
    for p in module.parameters():
        p.requires_grad_(False)
    dgnam = DGNAM(load_generator(GENERATOR), classifier, ActMaxSettings(steps=steps, **DEMO_SETTINGS), "cpu")
    rows = dgnam.plan([f"fc8:{i}" for i in range(len(CIFAR_CLASSES))], restarts, seed)
    start = time.perf_counter()
    result = dgnam.optimise(rows, upper_bound=weights.load_bounds(BOUNDS))
    whole = (0, 0, *dgnam.generator.space.size)
    images = torch.stack(dgnam.render(result.codes_last, [whole] * len(rows)))
    info = {"synth_seconds": round(time.perf_counter() - start, 1), "final_activation": float(result.act_end.mean())}
    return spaces.convert(images, dgnam.generator.space, spaces.RGB01).clamp(0, 1), info


def unit_labels(restarts: int) -> torch.Tensor:
    """The intended class of each synthetic image (unit-major rows)."""
    return torch.arange(len(CIFAR_CLASSES)).repeat_interleave(restarts)


def recognised(judge: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of ``images`` (RGB 0..1) the judge assigns to ``labels``."""
    verdicts = []
    for start in range(0, len(images), 500):
        chunk = images[start : start + 500]
        verdicts += judge_images(judge, list(chunk), spaces.RGB01.with_size(tuple(chunk.shape[-2:])))
    return float((torch.tensor(verdicts) == labels).float().mean())


@torch.no_grad()
def fc7(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pre-ReLU fc7 of ``module`` for RGB 0..1 images."""
    return forward_to(module, spaces.convert(images, spaces.RGB01, CIFAR_CAFFE_32), ["fc7"])["fc7"].flatten(1)


def distances(images: torch.Tensor, reference: torch.Tensor, module: torch.nn.Module) -> dict[str, float]:
    """Mean per-image pixel RMS (RGB 0..1) and fc7 L2 (in ``module``) between matched images."""
    return {"pixel_rms": float((images - reference).pow(2).mean((1, 2, 3)).sqrt().mean()),
            "fc7_l2": float((fc7(module, images) - fc7(module, reference)).norm(dim=1).mean())}


def image_measures(images: torch.Tensor) -> dict[str, float]:
    """The blur and cut-up measures of a set of images."""
    seam, inside = seam_correlation(images)
    return {"laplacian_var": float(laplacian_variance(images).mean()),
            "hf_share": float(high_frequency_share(images).mean()), "seam_corr": seam, "inside_corr": inside}


# ----- report -----------------------------------------------------------------------------------------
def print_tables(report: dict) -> None:
    """The nets table, the colour table and the randomisation table."""
    print(f"\nnets ({report['epochs']} epochs' gradient steps; {report['restarts']} images per unit, "
          f"{report['steps']} steps; judge = ResNet-20 top-1 on the 10 x restarts images)")
    head = ("net", "train imgs", "epochs", "train s", "held-out", "judge", "final act", "lap var", "hf share",
            "seam r", "inside r")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, n in report["nets"].items():
        cells = [name, n["train_images"], n["epochs"], n.get("train_seconds", "-"), f"{n['held_out']:.3f}",
                 f"{n['judge']:.3f}", f"{n['final_activation']:.1f}", f"{n['laplacian_var']:.0f}",
                 f"{n['hf_share']:.4f}", f"{n['seam_corr']:.3f}", f"{n['inside_corr']:.3f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    t = report["training_images"]
    for name, m in t.items():
        print(f"  real images, {name}: lap var {m['laplacian_var']:.0f}, hf share {m['hf_share']:.4f}, "
              f"seam r {m['seam_corr']:.3f}, inside r {m['inside_corr']:.3f}, judge on held-out {m['judge']:.3f}")
    c = report["colour"]
    print("\ncolour: chroma correlation of synthetic per-class channel means with the training images'")
    print("| net | with normal training images | with BRG-swapped training images | mean R, G, B |\n|---|---|---|---|")
    for name, m in c["nets"].items():
        rgb = ", ".join(f"{v:.3f}" for v in m["mean_rgb"])
        print(f"| {name} | {m['vs_normal']:.3f} | {m['vs_brg']:.3f} | {rgb} |")
    print(f"  judge on brg net's images: as made {c['judge_brg']:.3f}, channels swapped back {c['judge_brg_back']:.3f}")
    print("\nrandomisation of the shipped net (distances to the trained net's images, matched rows)")
    print("| stage | pixel RMS | fc7 L2 | judge | final act |\n|---|---|---|---|---|")
    for name, m in report["randomisation"].items():
        pix = f"{m['pixel_rms']:.3f}" if "pixel_rms" in m else "-"
        f7 = f"{m['fc7_l2']:.1f}" if "fc7_l2" in m else "-"
        act = f"{m['final_activation']:.1f}" if "final_activation" in m else "-"
        print(f"| {name} | {pix} | {f7} | {m['judge']:.3f} | {act} |")


def write_montage(path: Path, rows: dict[str, torch.Tensor], restarts: int, tile: int = 64) -> None:
    """One row per entry, the first image of each of the 10 units (airplane ... truck, left to right).

    Captions: the row's name under its first cell, the class names under the first row's other cells.
    """
    tiles, labels = [], []
    for k, (name, images) in enumerate(rows.items()):
        for u in range(len(CIFAR_CLASSES)):
            tiles.append((images[u * restarts].permute(1, 2, 0) * 255).round().byte().numpy())
            labels.append(name if u == 0 else CIFAR_CLASSES[u] if k == 0 else "")
    save_png(path, montage(tiles, labels, columns=len(CIFAR_CLASSES), tile=tile))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=20, help="epochs over the 8,000 images (the shipped net: 60)")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="DGN-AM steps (the demo's 400)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "out" / "prior-sanity", help="cache of the trained nets")
    p.add_argument("--montage", type=Path, default=None, help="montage of every net's images")
    p.add_argument("--cascade-montage", type=Path, default=None, help="montage of the randomisation stages")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    root = args.work / "data" / "cifar10_test_jpg" / "test"
    if not root.is_dir():
        extract_archive(FIXTURES / ARCHIVE, args.work / "data")
    dataset = ImageFolderDataset(root)
    images, labels = load_images(dataset.paths), torch.tensor(dataset.labels)
    train_idx, held_idx = split_indices(dataset.labels, 800, 0)
    x, y, x_held, y_held = images[train_idx], labels[train_idx], images[held_idx], labels[held_idx]
    judge = find_judge()
    if judge is None:
        raise SystemExit("the ResNet-20 judge is needed: ../shared/fixtures/torch/resnet_cifar10")
    r, steps = args.restarts, args.steps
    units = unit_labels(r)
    report: dict = {"epochs": args.epochs, "restarts": r, "steps": steps, "threads": torch.get_num_threads(),
                    "nets": {}}
    pictures: dict[str, torch.Tensor] = {}
    modules: dict[str, torch.nn.Module] = {}

    def visit(name: str, module: torch.nn.Module, transform: Transform, info: dict) -> None:
        held = evaluate_classifier(module, transform(x_held), y_held, CIFAR_CAFFE_32, device="cpu")
        pictures[name], synth = preferred(module, r, steps)
        modules[name] = module
        report["nets"][name] = {**info, "held_out": held, "judge": recognised(judge, pictures[name], units),
                                **synth, **image_measures(pictures[name])}
        print(f"{name}: {report['nets'][name]}", flush=True)
        if args.json:
            atomic_write_json(args.json, report)

    shipped = load_classifier("cifar-caffenet").module.eval()
    visit("shipped", shipped, identity, {"train_images": len(x), "epochs": 60})
    for name, (xs, ys, transform) in variants(x, y).items():
        model, info = trained(name, xs, ys, args.epochs, args.work)
        visit(name, model, transform, {"train_images": len(xs), **info})

    # reference figures of the real images
    sample = torch.arange(0, len(x), 4)  # 2,000 training images
    report["training_images"] = {
        name: {**image_measures(f(x[sample])), "judge": recognised(judge, f(x_held), y_held)}
        for name, f in (("normal", identity), ("blur", blur), ("cut-up", cut_up), ("brg", brg))}
    means_normal, means_brg = class_channel_means(x, y), class_channel_means(brg(x), y)
    report["colour"] = {
        "nets": {name: {"vs_normal": chroma_correlation(class_channel_means(pictures[name], units), means_normal),
                        "vs_brg": chroma_correlation(class_channel_means(pictures[name], units), means_brg),
                        "mean_rgb": pictures[name].mean((0, 2, 3)).tolist()}
                 for name in ("shipped", "normal", "brg")},
        "training_mean_rgb": {"normal": x.mean((0, 2, 3)).tolist(), "brg": brg(x).mean((0, 2, 3)).tolist()},
        "judge_brg": report["nets"]["brg"]["judge"],
        "judge_brg_back": recognised(judge, swap_back(pictures["brg"]), units),
    }  # fmt: skip

    # cascading randomisation of the shipped net
    reference = pictures["shipped"]
    rand: dict[str, dict] = {"trained (reference)": {"judge": report["nets"]["shipped"]["judge"]}}
    other_seed, synth = preferred(shipped, r, steps, seed=1000)
    rand["baseline: trained, other start codes"] = {**distances(other_seed, reference, shipped),
                                                    "judge": recognised(judge, other_seed, units), **synth}
    rand[f"baseline: normal net retrained ({args.epochs} ep), same starts"] = {
        **distances(pictures["normal"], reference, shipped), "judge": report["nets"]["normal"]["judge"]}
    shifted = reference.roll(-r, 0)  # unit u+1's images
    rand["baseline: trained, another class's images"] = {**distances(shifted, reference, shipped),
                                                         "judge": recognised(judge, shifted, units.roll(-r))}
    stages = {}
    for k, layer in enumerate(("fc8", "fc7", "fc6")):
        layers = ["fc8", "fc7", "fc6"][: k + 1]
        stage_images, synth = preferred(cascade(shipped, layers), r, steps)
        stages[layer] = stage_images
        key = "re-initialised: " + " + ".join(layers)
        rand[key] = {**distances(stage_images, reference, shipped), "judge": recognised(judge, stage_images, units),
                     **synth}
        print(f"{key}: {rand[key]}", flush=True)
    report["randomisation"] = rand
    report["total_seconds"] = round(time.perf_counter() - t_all, 1)
    print_tables(report)
    print(f"\ntotal {report['total_seconds']:.0f} s")
    if args.json:
        atomic_write_json(args.json, report)
    if args.montage:
        rows = {**pictures, "brg, swapped back": swap_back(pictures["brg"])}
        order = ["shipped", "normal", "brg", "brg, swapped back", "blur", "cut-up", "10%", "25%"]
        write_montage(args.montage, {k: rows[k] for k in order}, r)
    if args.cascade_montage:
        write_montage(args.cascade_montage, {"trained": reference, "other starts": other_seed,
                                             "rand fc8": stages["fc8"], "rand fc8-7": stages["fc7"],
                                             "rand fc8-6": stages["fc6"]}, r)


if __name__ == "__main__":
    main()
