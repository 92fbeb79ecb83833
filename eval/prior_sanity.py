"""Does the prior show the network or itself? The DGN-AM supplement's sanity experiments on the CIFAR world.

Classifiers of the shipped cifar-caffenet architecture are trained (the recipe of training/train_cifar_world.py,
``--epochs`` each) on the 8,000 training images (a) as they are (the control), (b) BRG-swapped (the image's
R, G, B channels hold B, R, G), (c) Gaussian-blurred (sigma 1 px, 5x5 kernel, at 32x32), (d) cut up (the four
16x16 quarters of each image shuffled, a fixed permutation per image), (e) 10% and (f) 25% of the images
(stratified; trained for the same number of gradient steps as the full set). The shipped cifar-deepsim-fc6 prior,
trained for the normal classifier, stays fixed; DGN-AM (the demo's settings, 200 steps, ``--restarts`` per
unit) visualises each net's 10 output units. Then a cascading model randomisation (Adebayo et al. 2018) of the
shipped classifier: fc8, then fc7, then fc6 re-initialised in turn (PyTorch's default ``nn.Linear``
initialisation; with ``--own-init`` the architecture's own, whose fc8 is scaled by 0.1).

Measures (each net's images judged by ResNet-20, a network we did not train):
- held-out accuracy of each net (on held-out images transformed as its training images);
- BRG: channel means of the synthetic images vs the control's, and the judge's recognition before and after
  swapping the channels back;
- colour (every net): chroma correlation of the synthetic images' per-class channel means (minus each class's
  grey level, 30 numbers) with those of the normal and of the BRG-swapped training images;
- blur: high-frequency energy of the synthetic images (variance of the Laplacian of the grey image, 0..255),
  and the share of the grey image's spectral power above 0.25 cycles/px;
- cut-up: judge recognition and the correlation between an image's quarters (mean colour of the four quarters,
  across images; it cannot see a shuffle, which keeps each quarter's colour), and the seam correlation: pixels
  across the quarter seams (rows/cols 15|16), beside neighbouring lines inside the quarters (7|8, 23|24);
  a shuffle breaks the seams, not the insides;
- 10% / 25% / 100%: held-out accuracy beside judge recognition;
- randomisation: per stage, the mean distance of the preferred images to the trained net's (pixel RMS in 0..1,
  and L2 in the trained net's fc7), beside the distance between two seeds of the trained net (the natural
  spread) and to the normal net retrained here (same start seed), and the judge's recognition.

Every image measure is computed on every net's synthetic images and, for reference, on 2,000 training images
(as they are, and blurred, cut up or BRG-swapped; the colour tables on all 8,000). The JSON report is printed,
then a table of these measures.

Trained nets are cached in ``--work`` (default /tmp/dgn-prior-sanity), so a rerun only synthesises.

    python eval/prior_sanity.py [--epochs 6] [--restarts 2] [--montage docs/prior-sanity.png] [--own-init]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
from dgn.demo import BOUNDS, DEMO_SETTINGS, GENERATOR, find_judge, judge_images
from dgn.layers import forward_to
from dgn.models import Classifier, load_classifier, load_generator
from dgn.nets.toy import CIFAR_CAFFE_32, CIFAR_CLASSES, cifar_caffenet
from dgn.render import montage, save_png
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.training import evaluate_classifier, train_classifier

FIXTURES = REPO.parent / "shared" / "fixtures"
BRG = [2, 0, 1]  # new channel c holds old channel BRG[c]: R <- B, G <- R, B <- G
BACK = [1, 2, 0]  # undoes BRG
GREY = (0.299, 0.587, 0.114)
NEW_MEASURES = ("hf_share", "seam_correlation", "inside_correlation")  # beside Laplacian and quarter r


def brg(x: torch.Tensor) -> torch.Tensor:
    """RGB images (N, 3, H, W) with their channels holding B, R, G."""
    return x[:, BRG]


def blur(x: torch.Tensor) -> torch.Tensor:
    """Gaussian blur, sigma 1 px (5x5 kernel, reflected edges)."""
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(x, kernel_size=5, sigma=1.0)


def cut_up(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each image's four quarters shuffled (a seeded permutation per image)."""
    n, _, h, w = x.shape
    quarters = [x[..., :h // 2, :w // 2], x[..., :h // 2, w // 2:], x[..., h // 2:, :w // 2], x[..., h // 2:, w // 2:]]
    stacked = torch.stack(quarters, 1)  # (N, 4, C, h/2, w/2)
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(n)])
    s = stacked[torch.arange(n)[:, None], order]
    return torch.cat([torch.cat([s[:, 0], s[:, 1]], -1), torch.cat([s[:, 2], s[:, 3]], -1)], -2)


def laplacian_variance(x: torch.Tensor) -> torch.Tensor:
    """Per image: the variance of the discrete Laplacian of its grey image on the 0..255 scale."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(grey255(x)[:, None], kernel).flatten(1).var(1)


def quarter_correlation(x: torch.Tensor) -> float:
    """Mean correlation, across images, between the mean colours of horizontally and vertically adjacent quarters."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    q = [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]
    means = [part.mean((-2, -1)).flatten() for part in q]  # each (N * 3,)
    pairs = [(0, 1), (2, 3), (0, 2), (1, 3)]
    return float(torch.stack([torch.corrcoef(torch.stack([means[a], means[b]]))[0, 1] for a, b in pairs]).mean())


def grey255(x: torch.Tensor) -> torch.Tensor:
    """Grey images (N, H, W) on the 0..255 scale (Rec. 601 weights) of RGB 0..1 images (N, 3, H, W)."""
    return (x * 255).mul(torch.tensor(GREY, dtype=x.dtype).view(1, 3, 1, 1)).sum(1)


def high_frequency_share(x: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per image: the share of its grey image's spectral power (mean removed) above ``cutoff`` cycles/px.

    0 for a flat image; a checkerboard (0.5 cycles/px) has 1. Blurring lowers it, added noise raises it.
    """
    g = grey255(x)
    g = g - g.mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(g).abs().pow(2)
    fy = torch.fft.fftfreq(g.shape[-2]).view(-1, 1)
    fx = torch.fft.fftfreq(g.shape[-1]).view(1, -1)
    high = (fy.pow(2) + fx.pow(2)).sqrt() > cutoff
    total = power.sum((-2, -1))
    share = (power * high).sum((-2, -1)) / total.clamp_min(1e-12)
    return torch.where(total > 0, share, torch.zeros_like(total))


def line_correlation(x: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """Pearson correlation of pixel values across pairs of lines of images (N, C, H, W).

    For each (i, j) in ``pairs`` the values of row i are paired with those of row j, and those of column i
    with those of column j, over all images and channels; one correlation over all the pairs.
    """
    a = torch.cat([torch.cat([x[..., i, :].flatten(), x[..., :, i].flatten()]) for i, _ in pairs])
    b = torch.cat([torch.cat([x[..., j, :].flatten(), x[..., :, j].flatten()]) for _, j in pairs])
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def seam_correlation(x: torch.Tensor) -> tuple[float, float]:
    """(across the quarter seams, across neighbouring lines inside the quarters) of square images.

    At 32x32: rows/cols 15|16, and 7|8 with 23|24. On real images both are high; shuffling the quarters
    lowers the first and leaves the second as it was.
    """
    h = x.shape[-1] // 2
    q = h // 2
    return line_correlation(x, [(h - 1, h)]), line_correlation(x, [(q - 1, q), (h + q - 1, h + q)])


def class_channel_means(x: torch.Tensor, labels: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """(classes, 3): the mean R, G, B of the images (N, 3, H, W) of each class."""
    return torch.stack([x[labels == c].mean((0, 2, 3)) for c in range(classes)])


def chroma_correlation(means: torch.Tensor, reference: torch.Tensor) -> float:
    """Correlation of two (classes, 3) channel-mean tables after removing each class's grey level (chroma).

    1 for identical colour statistics (and for any that differ only in a class's brightness).
    """
    a = (means - means.mean(1, keepdim=True)).flatten()
    b = (reference - reference.mean(1, keepdim=True)).flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def image_measures(x: torch.Tensor) -> dict[str, float]:
    """The blur and cut-up measures of a set of RGB 0..1 images (the means over the images)."""
    seam, inside = seam_correlation(x)
    return {"laplacian_variance": float(laplacian_variance(x).mean()),
            "hf_share": float(high_frequency_share(x).mean()),
            "quarter_correlation": quarter_correlation(x), "seam_correlation": seam,
            "inside_correlation": inside}


def variants(x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor, object]]:
    """name -> (training images, labels, the transform of the net's inputs)."""
    keep = {}
    for share in (10, 25):
        idx = torch.cat([torch.nonzero(y == c).flatten()[: len(y) * share // 1000] for c in range(10)])
        keep[share] = idx.sort().values
    same = lambda t: t
    return {"normal": (x, y, same), "brg": (brg(x), y, brg), "blur": (blur(x), y, blur),
            "cut-up": (cut_up(x), y, cut_up), "10%": (x[keep[10]], y[keep[10]], same),
            "25%": (x[keep[25]], y[keep[25]], same)}


def trained(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int, work: Path) -> tuple[torch.nn.Module, float]:
    """A cifar-caffenet trained on (x, y) for the gradient steps of ``epochs`` over 8,000 images (cached)."""
    path = work / f"{name.replace('%', 'pct')}-{epochs}.safetensors"
    torch.manual_seed(0)
    model = cifar_caffenet()
    if path.is_file():
        model.load_state_dict(load_file(path))
        return model.eval(), float(json.loads((path.with_suffix(".json")).read_text())["seconds"])
    start = time.perf_counter()
    train_classifier(model, x, y, CIFAR_CAFFE_32, max(1, round(epochs * 8000 / len(x))), seed=0, device="cpu")
    seconds = time.perf_counter() - start
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    return model.eval(), seconds


def reinitialise(module: torch.nn.Module, layer: str, own: torch.nn.Module | None = None) -> None:
    """Re-initialise ``module``'s ``layer`` in place: PyTorch's default (``reset_parameters``), or, given
    ``own`` (a freshly initialised net of the same architecture), a copy of that net's layer (its own scheme).
    """
    if own is None:
        getattr(module, layer).reset_parameters()
    else:
        getattr(module, layer).load_state_dict(getattr(own, layer).state_dict())


def preferred(module: torch.nn.Module, restarts: int, seed: int = 0) -> torch.Tensor:
    """DGN-AM images (RGB 0..1) of fc8:0-9 through the shipped prior, the demo's settings for 200 steps."""
    classifier = Classifier(module, CIFAR_CAFFE_32, "cifar-caffenet")
    dgnam = DGNAM(load_generator(GENERATOR), classifier, ActMaxSettings(steps=200, **DEMO_SETTINGS), "cpu")
    rows = dgnam.plan([f"fc8:{i}" for i in range(10)], restarts, seed)
    result = dgnam.optimise(rows, upper_bound=weights.load_bounds(BOUNDS))
    whole = (0, 0, *dgnam.generator.space.size)
    images = torch.stack(dgnam.render(result.codes_last, [whole] * len(rows)))
    return spaces.convert(images, dgnam.generator.space, spaces.RGB01).clamp(0, 1)


def recognised(judge, images: torch.Tensor, restarts: int) -> float:
    verdicts = judge_images(judge, list(images), spaces.RGB01.with_size(tuple(images.shape[-2:])))
    units = [u for u in range(10) for _ in range(restarts)]
    return sum(v == u for v, u in zip(verdicts, units)) / len(units)


def fc7(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return forward_to(module, spaces.convert(images, spaces.RGB01, CIFAR_CAFFE_32), ["fc7"])["fc7"].flatten(1)


def print_measures(report: dict) -> None:
    """A table of the image measures of every net's synthetic images, and the training images' beneath it."""
    head = ("net", "held-out", "judge", "lap var", "hf share", "quarter r", "seam r", "inside r",
            "chroma r vs normal", "chroma r vs brg")
    print("\nimage measures of the synthetic images (training images below)")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, n in report["nets"].items():
        cells = [name, f"{n['held_out_accuracy']:.3f}", f"{n['judge']:.3f}", f"{n['laplacian_variance']:.0f}",
                 f"{n['hf_share']:.4f}", f"{n['quarter_correlation']:.3f}", f"{n['seam_correlation']:.3f}",
                 f"{n['inside_correlation']:.3f}", f"{n['chroma_vs_normal']:.3f}",
                 f"{n['chroma_vs_brg']:.3f}"]
        print("| " + " | ".join(cells) + " |")
    t = report["training_images"]
    for name in ("normal", "blur", "cut_up", "brg"):
        print(f"  training images, {name}: hf share {t[f'hf_share_{name}']:.4f}, "
              f"seam r {t[f'seam_correlation_{name}']:.3f}, inside r {t[f'inside_correlation_{name}']:.3f}")
    print(f"  training images' chroma r with the normal ones: brg {t['chroma_brg_vs_normal']:.3f}, "
          f"blur {t['chroma_blur_vs_normal']:.3f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="epochs over the 8,000 images (shipped net: 60)")
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/dgn-prior-sanity"))
    p.add_argument("--montage", type=Path, default=None, help="write a montage of every net's images here")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--own-init", action="store_true",
                   help="re-initialise the randomised layers with the net's own scheme (fc8 scaled by 0.1), "
                        "not PyTorch's default")
    args = p.parse_args(argv)
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
    r = args.restarts
    report: dict = {"epochs": args.epochs, "restarts": r, "nets": {}}
    pictures: dict[str, torch.Tensor] = {}
    units = torch.tensor([u for u in range(10) for _ in range(r)])
    for name, (xs, ys, transform) in variants(x, y).items():
        model, seconds = trained(name, xs, ys, args.epochs, args.work)
        accuracy = evaluate_classifier(model, transform(x_held), y_held, CIFAR_CAFFE_32, device="cpu")
        pictures[name] = preferred(model, r)
        report["nets"][name] = {"train_images": len(xs), "train_seconds": round(seconds, 1),
                                "held_out_accuracy": accuracy, "judge": recognised(judge, pictures[name], r),
                                "channel_means": pictures[name].mean((0, 2, 3)).tolist(),
                                "laplacian_variance": float(laplacian_variance(pictures[name]).mean()),
                                "quarter_correlation": quarter_correlation(pictures[name])}
        measures = image_measures(pictures[name])
        report["nets"][name].update({k: measures[k] for k in NEW_MEASURES})
        print(f"{name}: {len(xs)} images, {seconds:.0f} s, held-out {accuracy:.3f}", flush=True)
    nets = report["nets"]
    nets["brg"]["judge_swapped_back"] = recognised(judge, pictures["brg"][:, BACK], r)
    report["training_images"] = {"channel_means_normal": x.mean((0, 2, 3)).tolist(),
                                 "channel_means_brg": brg(x).mean((0, 2, 3)).tolist(),
                                 "laplacian_variance_normal": float(laplacian_variance(x[:2000]).mean()),
                                 "laplacian_variance_blur": float(laplacian_variance(blur(x[:2000])).mean()),
                                 "quarter_correlation_normal": quarter_correlation(x[:2000]),
                                 "quarter_correlation_cut_up": quarter_correlation(cut_up(x[:2000]))}
    for name, f in (("normal", lambda t: t), ("blur", blur), ("cut_up", cut_up), ("brg", brg)):
        measures = image_measures(f(x[:2000]))
        for k in NEW_MEASURES:
            report["training_images"][f"{k}_{name}"] = measures[k]
    means_normal, means_brg = class_channel_means(x, y), class_channel_means(brg(x), y)
    for name, imgs in pictures.items():
        means = class_channel_means(imgs, units)
        nets[name]["chroma_vs_normal"] = chroma_correlation(means, means_normal)
        nets[name]["chroma_vs_brg"] = chroma_correlation(means, means_brg)
    report["training_images"]["chroma_brg_vs_normal"] = chroma_correlation(means_brg, means_normal)
    report["training_images"]["chroma_blur_vs_normal"] = chroma_correlation(class_channel_means(blur(x), y),
                                                                            means_normal)

    shipped = load_classifier("cifar-caffenet").module.eval()
    reference = preferred(shipped, r)
    other_seed = preferred(shipped, r, seed=100)
    stages = {"trained, seed 100 (the natural spread)": other_seed}
    cascade = load_classifier("cifar-caffenet").module.eval()
    torch.manual_seed(0)
    own = cifar_caffenet() if args.own_init else None  # seeded: the same fresh layers for every stage
    for layer in ("fc8", "fc7", "fc6"):
        reinitialise(cascade, layer, own)
        stages[f"{' + '.join(['fc8', 'fc7', 'fc6'][: ['fc8', 'fc7', 'fc6'].index(layer) + 1])} re-initialised"] = (
            preferred(cascade, r))
    ref_fc7 = fc7(shipped, reference)
    report["randomisation"] = {
        stage: {"pixel_rms": float((imgs - reference).pow(2).mean((1, 2, 3)).sqrt().mean()),
                "fc7_distance": float((fc7(shipped, imgs) - ref_fc7).norm(dim=1).mean()),
                "judge": recognised(judge, imgs, r)}
        for stage, imgs in stages.items()}
    report["randomisation"]["trained"] = {"judge": recognised(judge, reference, r)}
    report["randomisation"]["baseline: normal net retrained here, same seed"] = {
        "pixel_rms": float((pictures["normal"] - reference).pow(2).mean((1, 2, 3)).sqrt().mean()),
        "fc7_distance": float((fc7(shipped, pictures["normal"]) - ref_fc7).norm(dim=1).mean()),
        "judge": nets["normal"]["judge"]}
    report["own_init"] = args.own_init
    print(json.dumps(report, indent=1))
    print_measures(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.montage:
        short = {"fc8 re-initialised": "rand fc8", "fc8 + fc7 re-initialised": "rand 8,7",
                 "fc8 + fc7 + fc6 re-initialised": "rand 8-6"}
        rows = {**pictures, "trained": reference, **{short[k]: v for k, v in stages.items() if k in short}}
        tiles, labels_ = [], []
        for name, imgs in rows.items():
            for u in range(10):
                tiles.append((imgs[u * r].permute(1, 2, 0) * 255).round().byte().numpy())
                labels_.append(f"{name} {CIFAR_CLASSES[u]}" if u == 0 else CIFAR_CLASSES[u])
        save_png(args.montage, montage(tiles, labels_, columns=10, tile=64))


if __name__ == "__main__":
    main()
