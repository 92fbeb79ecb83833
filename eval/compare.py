"""DGN-AM vs image-space activation maximisation: same classifier, targets, steps and restarts.

For DGN-AM (``dgn.synthesis.DGNAM`` with a generator prior) and every image-space preset
(``dgn.baseline.PRESETS``) it prints one line: the mean final activation; the same relative to the
unit's highest activation over a folder of real images (``--real-images``); recognisability by a
judge classifier we did not train (``--judge``, default the akamaster ResNet-20 on CIFAR-10: the share
of images it puts in the target's CIFAR-10 class, for targets that have one, and its mean probability);
wall time and row-steps per second. It writes ``montage.png`` (one row per target, one column per
method, the images as the classifier sees them) and ``results.json`` to ``--out``.

With ``--lucent`` (and torch-lucent importable; it is not a dependency) it also times lucent's
``render_vis`` against our batched baseline on the same torchvision model and targets, in
target-steps per second.

Smoke check (random weights, CPU, a few minutes)::

    python eval/compare.py --random-weights --device cpu --steps 8 --target fc8:404 --target fc8:281 \\
        --judge-weights-dir ../shared/fixtures/torch/resnet_cifar10 --out /tmp/compare
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dgn import spaces, weights
from dgn.baseline import PRESETS, ImageAM, preset
from dgn.demo import BOUNDS as DEMO_BOUNDS
from dgn.demo import DEMO_SETTINGS
from dgn.demo import GENERATOR as DEMO_GENERATOR
from dgn.engine import resolve_device
from dgn.errors import DGNError
from dgn.files import atomic_write_json
from dgn.layers import forward_to
from dgn.models import Classifier, load_classifier, load_generator
from dgn.objectives import UnitObjective
from dgn.render import montage, save_png, to_uint8
from dgn.rows import Row
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.targets import Target, expand_targets

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# ImageNet-1k classes that are instances of a CIFAR-10 class (checked against synset_words.txt).
# CIFAR's "deer" has no ImageNet class, so no target maps to it.
IMAGENET_TO_CIFAR: dict[int, int] = {
    **{i: 0 for i in (404, 895)},  # airliner, warplane
    # beach wagon, cab, convertible, jeep, limousine, minivan, sports car
    **{i: 1 for i in (436, 468, 511, 609, 627, 656, 817)},
    **{i: 2 for i in (*range(7, 25), *range(80, 101))},  # cock ... great grey owl, black grouse ... black swan
    **{i: 3 for i in range(281, 286)},  # tabby, tiger, Persian, Siamese, Egyptian cat
    **{i: 5 for i in range(151, 269)},  # Chihuahua ... Mexican hairless
    **{i: 6 for i in (30, 31, 32)},  # bullfrog, tree frog, tailed frog
    339: 7,  # sorrel
    **{i: 8 for i in (510, 628, 724, 780, 914)},  # container ship, liner, pirate ship, schooner, yawl
    **{i: 9 for i in (555, 569, 675, 717, 864, 867)},  # fire engine, garbage truck, moving van, pickup, tow, trailer
}

DEFAULT_TARGETS = ["fc8:404", "fc8:817", "fc8:94", "fc8:281", "fc8:207", "fc8:31", "fc8:339", "fc8:510", "fc8:555"]


# ----- helpers ---------------------------------------------------------------------------------------
def last_linear(module: torch.nn.Module) -> tuple[str, int]:
    """Name and width of the classifier's last Linear layer (its class scores)."""
    name, layer = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    return name, layer.out_features


def cifar_class(target: Target, classifier: Classifier) -> int | None:
    """The CIFAR-10 class a target's unit stands for, if it is a class score that has one."""
    name, width = last_linear(classifier.module)
    if target.layer != name:
        return None
    if width == 1000:
        return IMAGENET_TO_CIFAR.get(target.unit)
    if width == 10 and "cifar" in classifier.name:  # the CIFAR-10 world (cifar-caffenet, resnet20-cifar10)
        return target.unit
    return None


@torch.no_grad()
def real_max(classifier: Classifier, targets: list[Target], folder: Path, limit: int, device: torch.device,
             batch: int = 32) -> torch.Tensor:
    """Each target unit's highest (pre-ReLU) activation over up to ``limit`` real images of ``folder``."""
    from dgn.data import ImageFolderDataset, load_images

    paths = [p for p, _ in ImageFolderDataset(folder).samples]
    if not paths:
        raise DGNError(f"no images under {folder}")
    paths = paths[:: max(1, len(paths) // limit)][:limit]  # spread over the classes of a sorted folder
    objective = UnitObjective(targets)
    best = torch.full((len(targets),), -float("inf"))
    for start in range(0, len(paths), batch):
        rgb = load_images(paths[start : start + batch], size=classifier.space.size).to(device)
        x = spaces.from_rgb01(rgb, classifier.space)
        acts = forward_to(classifier.module, x, objective.layers)
        for i, t in enumerate(targets):
            a = acts[t.layer][:, t.unit]
            if t.position is not None:
                a = a[:, t.position[0], t.position[1]]
            best[i] = max(best[i], float(a.max()))
    return best


@torch.no_grad()
def judge_scores(judge: Classifier, images: torch.Tensor, space: spaces.PixelSpace, classes: list[int | None],
                 device: torch.device) -> dict:
    """Share of images the judge puts in their target's class, and its mean probability (mapped rows only)."""
    rows = [i for i, c in enumerate(classes) if c is not None]
    if not rows:
        return {"top1": None, "p_class": None, "rows": 0}
    x = spaces.convert(images[rows].to(device), space, judge.space, mode="resize")
    probs = torch.softmax(judge.module(x).float(), 1).cpu()
    wanted = torch.tensor([classes[i] for i in rows])
    p = probs[torch.arange(len(rows)), wanted]
    return {"top1": float((probs.argmax(1) == wanted).float().mean()), "p_class": float(p.mean()), "rows": len(rows)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_dgnam(args: argparse.Namespace, classifier: Classifier, targets: list[str], device: torch.device,
              demo: bool = False, diversity: float = 0.0) -> dict:
    """DGN-AM with the paper's act_max settings, or (``demo``) with ``dgn demo``'s box and transforms; with
    ``diversity``, Lucid's diversity term among each target's restarts at that weight."""
    generator = load_generator(args.generator, args.random_weights, args.seed, args.weights_dir)
    settings = ActMaxSettings(steps=args.steps, diversity=diversity, diversity_layer=args.diversity_layer,
                              **(DEMO_SETTINGS if demo else {}))
    dgnam = DGNAM(generator, classifier, settings, device)
    upper = weights.load_bounds(DEMO_BOUNDS, args.weights_dir) if demo else None
    _sync(device)
    t0 = time.perf_counter()
    result = dgnam.synthesize(targets, args.restarts, args.seed, args.batch_size, upper_bound=upper)
    _sync(device)
    wall = time.perf_counter() - t0
    with torch.no_grad():
        images = torch.cat([dgnam.image_for_classifier(result.codes_last[i : i + 16].to(device)).float().cpu()
                            for i in range(0, len(result.rows), 16)])
    return {"rows": result.rows, "images": images, "act_end": result.act_end, "wall": wall,
            "steps_per_row": args.steps}


def run_preset(args: argparse.Namespace, name: str, classifier: Classifier, targets: list[str],
               device: torch.device) -> dict:
    settings = replace(preset(name), steps=args.steps)
    am = ImageAM(classifier, settings, device)
    _sync(device)
    t0 = time.perf_counter()
    result = am.synthesize(targets, args.restarts, args.seed, args.batch_size)
    _sync(device)
    wall = time.perf_counter() - t0
    return {"rows": result.rows, "images": result.codes_last, "act_end": result.act_end, "wall": wall,
            "steps_per_row": am.steps_per_row}


def layer_features(classifier: Classifier, images: torch.Tensor, layer: str, device: torch.device | str) -> torch.Tensor:
    """A layer's features (N, D) of images in the classifier's space, in chunks."""
    with torch.no_grad():
        return torch.cat([forward_to(classifier.module, images[i : i + 256].to(device), [layer])[layer].flatten(1)
                          .float().cpu() for i in range(0, len(images), 256)])


def mean_pairwise_distance(features: torch.Tensor, groups: list[list[int]]) -> float | None:
    """Mean pairwise Euclidean distance within each group of two or more rows, averaged over the groups
    (None when no group has two)."""
    means = []
    for index in groups:
        if len(index) > 1:
            d = torch.cdist(features[index], features[index])
            means.append(float(d.sum() / (len(index) * (len(index) - 1))))
    return float(np.mean(means)) if means else None


def restart_diversity(classifier: Classifier, images: torch.Tensor, rows: list[Row], layer: str,
                      device: torch.device) -> float | None:
    """Mean pairwise Euclidean distance between the ``layer`` features of each target's restarts (images in
    the classifier's space), averaged over targets; None with one restart."""
    by_target: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_target.setdefault(row.label, []).append(i)
    return mean_pairwise_distance(layer_features(classifier, images, layer, device), list(by_target.values()))


# ----- lucent ------------------------------------------------------------------------------------------
def _timed(run: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _suffix(precision: str) -> str:
    """How a method's label names its precision (fp32 unnamed)."""
    return ", bf16" if precision == "bf16" else ""


def _lucent_batched_label(n: int, precision: str) -> str:
    return f"lucent batched (batch {n}, summed objectives){_suffix(precision)}"


def lucent_throughput(args: argparse.Namespace, device: torch.device) -> dict | None:
    """Target-steps/s of lucent's render_vis vs our batched baseline, same model, targets and steps.

    Every method runs once per round, the rounds interleaved, and keeps its best round (on a shared
    machine the fastest run is the one least disturbed by other load). Throughput is given per wall
    second and per CPU second of this process (the latter barely moves with other load at one thread).
    Lucent runs as its README shows it: ``render_vis`` with its defaults (FFT-decorrelated image,
    standard transforms, Adam 0.05) on a torchvision model in eval mode; "weights frozen" also turns
    off the weight gradients it otherwise computes, which only makes it faster.
    """
    try:
        from lucent.optvis import objectives, param, render
    except Exception as err:  # noqa: BLE001 - any import failure means "not available"
        print(f"\nlucent comparison skipped: torch-lucent does not import ({type(err).__name__}: {err})")
        return None
    import kornia

    if not hasattr(kornia, "get_rotation_matrix2d"):  # lucent's transforms call kornia's pre-0.6 top-level API
        print(f"\nlucent comparison skipped: kornia {kornia.__version__} lacks the API lucent's transforms use; "
              "pip install --no-deps 'kornia==0.4.1' (lucent's pin) or 'kornia<0.6'")
        return None
    n, steps = args.lucent_targets, args.lucent_steps
    ours_clf = load_classifier(args.lucent_model, random_weights=True, seed=args.seed)
    layer, width = last_linear(ours_clf.module)
    if width < n:
        raise DGNError(f"{args.lucent_model} has only {width} output units; use --lucent-targets <= {width}")
    targets = [f"{layer}:{i}" for i in range(n)]

    methods: dict[str, tuple[Callable[[], None], int]] = {}  # name -> (run, target-steps it does)
    precisions = ("fp32", "bf16") if args.lucent_bf16 else ("fp32",)
    for name in dict.fromkeys(args.lucent_presets.split(",")):
        for precision in precisions:
            settings = replace(preset(name), precision=precision)
            am = ImageAM(ours_clf, replace(settings, steps=steps, octaves=min(settings.octaves, steps)), device)
            # Presets with input transforms (jitter) also run one no-grad forward per step to record the
            # activation of the un-jittered image; presets without them reuse the gradient's forward.
            extra = " + bookkeeping forward" if settings.stage("input") else ""
            label = f"ours {name} (batch {n}{extra}){_suffix(precision)}"
            methods[label] = (lambda am=am: am.synthesize(targets, batch_size=n), n * am.steps_per_row)

    # lucent hooks every module and never removes the hooks, and its backward accumulates weight gradients
    # into the model: give it its own copies, and a clean model (no hooks, no gradients) for every call,
    # outside the timed region, so neither piles up over calls.
    def lucent_model(frozen: bool) -> torch.nn.Module:
        model = load_classifier(args.lucent_model, random_weights=True, seed=args.seed).module.to(device).eval()
        return model.requires_grad_(not frozen)

    def clean(model: torch.nn.Module) -> None:
        for module in model.modules():
            module._forward_hooks.clear()
        model.zero_grad(set_to_none=True)

    lucent_layer = layer.replace(".", "_")
    kwargs = {"thresholds": (steps,), "show_image": False, "progress": False, "verbose": False}

    def lucent_batched(model: torch.nn.Module) -> None:
        objective = objectives.channel(lucent_layer, 0, batch=0)
        for i in range(1, n):
            objective = objective + objectives.channel(lucent_layer, i, batch=i)
        render.render_vis(model, objective, lambda: param.image(224, batch=n), **kwargs)

    k = min(n, args.lucent_single)

    def lucent_single(model: torch.nn.Module, i: int) -> None:
        render.render_vis(model, f"{lucent_layer}:{i % k}", lambda: param.image(224), **kwargs)

    def lucent_batched_bf16(model: torch.nn.Module) -> None:
        # lucent has no precision option; under autocast its steps run, and only its final conversion of
        # the (now bf16) image to numpy fails, after the last step: time the steps, drop that error.
        with torch.autocast(device.type, dtype=torch.bfloat16):
            try:
                lucent_batched(model)
            except TypeError as err:
                if "BFloat16" not in str(err):
                    raise

    default, frozen = lucent_model(False), lucent_model(True)
    for precision in precisions:
        run = lucent_batched_bf16 if precision == "bf16" else lucent_batched
        methods[_lucent_batched_label(n, precision)] = (lambda run=run: run(default), n * steps)
        methods[f"lucent batched, weights frozen (batch {n}){_suffix(precision)}"] = (lambda run=run: run(frozen),
                                                                                       n * steps)
    single = f"lucent one target per call ({k} calls)"
    methods[single] = (lambda: None, k * steps)

    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.lucent_rounds):
        for name, (run, work) in methods.items():
            if name == single:  # k timed calls, each on a clean model
                times = []
                for i in range(k):
                    clean(default)
                    times.append(_timed(lambda i=i: lucent_single(default, i), device))
                wall, cpu = sum(t[0] for t in times), sum(t[1] for t in times)
            else:
                clean(default)
                clean(frozen)
                wall, cpu = _timed(run, device)
            prev = best.get(name, (0.0, 0.0))
            best[name] = (max(prev[0], work / wall), max(prev[1], work / cpu))
    return {"model": args.lucent_model, "targets": n, "steps": steps, "device": str(device),
            "threads": torch.get_num_threads(), "rounds": args.lucent_rounds,
            "throughput": {name: {"per_wall_s": w, "per_cpu_s": c} for name, (w, c) in best.items()}}


def print_lucent(report: dict) -> None:
    """The throughput table, with each of our presets' ratio to lucent batched and one target per call."""
    rates = report["throughput"]
    single = next(v for k, v in rates.items() if k.startswith("lucent one target"))
    print(f"\nthroughput, target-steps/s, {report['model']} (random weights), {report['targets']} targets, "
          f"{report['steps']} steps, {report['device']}, {report['threads']} threads, best of {report['rounds']} "
          f"interleaved rounds:")
    print(f"  {'method':<52} {'per wall s':>10} {'per CPU s':>10} {'x lucent batched':>17} {'x lucent 1/call':>16}")
    for name, v in rates.items():
        ratio = ""
        if name.startswith("ours"):
            batched = rates[_lucent_batched_label(report["targets"], "bf16" if name.endswith(", bf16") else "fp32")]
            ratio = (f"{v['per_wall_s'] / batched['per_wall_s']:>7.2f} /{v['per_cpu_s'] / batched['per_cpu_s']:>5.2f}"
                     f"    {v['per_wall_s'] / single['per_wall_s']:>6.2f} /{v['per_cpu_s'] / single['per_cpu_s']:>5.2f}")
        print(f"  {name:<52} {v['per_wall_s']:>10.1f} {v['per_cpu_s']:>10.1f} {ratio}")
    print("  (ratios: wall / CPU; a bf16 row's 'x lucent batched' is against lucent batched under bf16 autocast)")


# ----- main --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classifier", default="caffenet")
    p.add_argument("--generator", default="deepsim-fc6", help="DGN-AM's prior")
    p.add_argument("--target", action="append",
                   help=f"repeatable, ranges allowed (default: {' '.join(DEFAULT_TARGETS)})")
    p.add_argument("--presets", default=",".join(n for n, s in PRESETS.items() if not s.anchor_weight),
                   help="comma-separated image-space presets (default: all but accentuate, which needs a real image)")
    p.add_argument("--steps", type=int, default=200, help="steps per row for every method")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--real-images", default=None, help="folder of real images for the units' highest activation")
    p.add_argument("--real-limit", type=int, default=500, help="at most this many real images")
    p.add_argument("--judge", default="resnet20-cifar10", help="independent judge classifier ('none' to skip)")
    p.add_argument("--judge-weights-dir", default=None, help="where the judge's weights are (default --weights-dir)")
    p.add_argument("--demo-settings", action="store_true",
                   help=f"also DGN-AM with dgn demo's {DEMO_BOUNDS} box and input transforms (same steps)")
    p.add_argument("--dgnam-diversity", type=float, default=0.0, metavar="WEIGHT",
                   help="also run DGN-AM (with --demo-settings: the demo's) with Lucid's diversity term at WEIGHT")
    p.add_argument("--diversity-layer", default="fc7",
                   help="the layer of the diversity column (mean pairwise distance of a target's restarts) and of "
                        "the diversity term")
    p.add_argument("--lucent", action="store_true", help="also time lucent's render_vis (if torch-lucent imports)")
    p.add_argument("--lucent-model", default="alexnet")
    p.add_argument("--lucent-targets", type=int, default=16)
    p.add_argument("--lucent-steps", type=int, default=20)
    p.add_argument("--lucent-single", type=int, default=4, help="one-target lucent calls to time")
    p.add_argument("--lucent-presets", default="deepdream,yosinski-3", help="our presets in the lucent timing")
    p.add_argument("--lucent-rounds", type=int, default=3, help="interleaved timing rounds (best kept)")
    p.add_argument("--lucent-bf16", action="store_true",
                   help="also time our presets with precision bf16 and lucent batched under bf16 autocast")
    p.add_argument("--lucent-only", action="store_true", help="only the lucent throughput comparison")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.lucent_only:
        lucent = lucent_throughput(args, device)
        if lucent:
            print_lucent(lucent)
            atomic_write_json(out / "lucent.json", {"config": vars(args), "lucent": lucent})
            print(f"\nwrote {out / 'lucent.json'}")
        return
    targets = [t for text in (args.target or DEFAULT_TARGETS) for t in expand_targets(text)]
    names = [n for n in args.presets.split(",") if n]
    for name in names:
        preset(name)  # fail early on a bad name
    if args.demo_settings and args.generator != DEMO_GENERATOR:
        raise DGNError(f"--demo-settings uses {DEMO_BOUNDS}, the box of {DEMO_GENERATOR}; got --generator "
                       f"{args.generator}")
    classifier = load_classifier(args.classifier, args.random_weights, args.seed, args.weights_dir)
    print(f"classifier {args.classifier} ({'random' if args.random_weights else 'trained'} weights), "
          f"{len(targets)} targets x {args.restarts} restarts, {args.steps} steps, device {device}, "
          f"{torch.get_num_threads()} CPU threads")

    results = {"dgn-am": run_dgnam(args, classifier, targets, device)}
    print(f"  dgn-am done in {results['dgn-am']['wall']:.1f} s")
    if args.demo_settings:
        results["dgn-am demo"] = run_dgnam(args, classifier, targets, device, demo=True)
        print(f"  dgn-am with dgn demo's settings done in {results['dgn-am demo']['wall']:.1f} s")
    if args.dgnam_diversity:
        label = "dgn-am demo diverse" if args.demo_settings else "dgn-am diverse"
        results[label] = run_dgnam(args, classifier, targets, device, args.demo_settings, args.dgnam_diversity)
        print(f"  {label} (diversity {args.dgnam_diversity:g} at {args.diversity_layer}) done in "
              f"{results[label]['wall']:.1f} s")
    for name in names:
        results[name] = run_preset(args, name, classifier, targets, device)
        print(f"  {name} done in {results[name]['wall']:.1f} s")
    rows: list[Row] = results["dgn-am"]["rows"]

    real = None
    if args.real_images:
        real = real_max(classifier, [r.target for r in rows], Path(args.real_images), args.real_limit, device)
    judge = None
    if args.judge != "none":
        try:
            judge = load_classifier(args.judge, weights_dir=args.judge_weights_dir or args.weights_dir).to(device)
        except DGNError as err:
            print(f"note: judge {args.judge!r} skipped: its weights are not available ({err})")
        else:
            if judge.name == classifier.name:
                print(f"note: the judge {judge.name!r} is the classifier itself, so it is not independent")
    classes = [cifar_class(r.target, classifier) for r in rows]

    table = {}
    for name, res in results.items():
        act = res["act_end"]
        entry = {"act_end_mean": float(act.mean()), "wall_s": res["wall"], "steps_per_row": res["steps_per_row"],
                 "row_steps_per_s": len(rows) * res["steps_per_row"] / res["wall"]}
        if real is not None:
            # A ratio means nothing for a unit no real image drives above zero (random weights): skip those.
            positive = real > 0
            entry["act_rel_real_max"] = float((act[positive] / real[positive]).mean()) if positive.any() else None
            entry["beats_real_max"] = float((act > real).float().mean())
        entry["diversity"] = restart_diversity(classifier, res["images"], rows, args.diversity_layer, device)
        if judge is not None:
            entry["judge"] = judge_scores(judge, res["images"], classifier.space, classes, device)
        table[name] = entry

    print(f"\n{'method':<20} {'act end':>10} {'/ real max':>10} {'> real max':>10} {'judge top1':>10} {'judge p':>8} "
          f"{'diversity':>9} {'wall s':>8} {'row-steps/s':>11} {'steps/row':>9}")
    for name, e in table.items():
        rel = f"{e['act_rel_real_max']:.3f}" if e.get("act_rel_real_max") is not None else "-"
        beats = f"{e['beats_real_max']:.2f}" if "beats_real_max" in e else "-"
        j = e.get("judge") or {}
        top1 = f"{j['top1']:.2f}" if j.get("top1") is not None else "-"
        pc = f"{j['p_class']:.3f}" if j.get("p_class") is not None else "-"
        div = f"{e['diversity']:.2f}" if e["diversity"] is not None else "-"
        print(f"{name:<20} {e['act_end_mean']:>10.3f} {rel:>10} {beats:>10} {top1:>10} {pc:>8} {div:>9} "
              f"{e['wall_s']:>8.1f} "
              f"{e['row_steps_per_s']:>11.1f} {e['steps_per_row']:>9}")
    if real is not None:
        print(f"real images: highest activation per row {np.round(real.numpy(), 2).tolist()} "
              f"(the ratio uses the {int((real > 0).sum())} rows with a positive maximum)")
    if judge is not None:
        mapped = sum(c is not None for c in classes)
        print(f"judge {judge.name}: {mapped}/{len(rows)} rows have a CIFAR-10 class "
              f"({', '.join(sorted({CIFAR10[c] for c in classes if c is not None}))})")

    # One row per target (restart 0), one column per method: what the classifier sees.
    method_names = list(results)
    tiles, labels = [], []
    for i, row in enumerate(rows):
        if row.restart:
            continue
        for name in method_names:
            tiles.append(to_uint8(results[name]["images"][i], classifier.space, "mean"))
            labels.append(f"{name} {row.label} {float(results[name]['act_end'][i]):.3g}")
    save_png(out / "montage.png", montage(tiles, labels, columns=len(method_names)))
    report = {"config": {k: v for k, v in vars(args).items()}, "targets": targets, "methods": table}
    if args.lucent:
        report["lucent"] = lucent_throughput(args, device)
        if report["lucent"]:
            print_lucent(report["lucent"])
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {out / 'montage.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
