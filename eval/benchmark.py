"""Throughput of DGN-AM, the image-space baseline and the video path, and how close each is to the device's limit.

An image-step is one row advanced by one full act_max step (generator forward + classifier forward to
the deepest target + one backward to the code + the update). Random weights: speed does not depend on them.
Configurations are measured in interleaved rounds and the best round of each is reported
(like timeit), so a burst of other work on the machine does not decide a ratio.

For each precision (fp32; bf16: autocast over bf16 copies of the weights, see ``dgn.placement``) it prints image-steps/s at batch 1 and the large batch, the
FLOPs of an image-step (counted), the achieved TFLOP/s and its share of the device's peak for that precision:
on a GPU the data sheet's, on a CPU the one worked out from what the machine says of itself
(``dgn.throughput.cpu_peak``: cores, vector width, bf16 units, clock, each with its source), beside the rate of
a measured 1024x1024 matmul, the most a real kernel gets here. Where the CPU has no native bf16 (oneDNN sees
neither AVX512_BF16 nor AMX) bf16 falls back to slow reference kernels: it is then measured once at batch 1
only, to show the cost. Then the image-space baseline (yosinski-3 on AlexNet; FLOPs: twice its forward's, the
forward and the input gradient) and the video path (the shipped LRCN world, 160 frames as one batch).

    python eval/benchmark.py                       # CPU: fp32 and bf16, batch 1 vs 16, channels-last vs contiguous, % of peak
    python eval/benchmark.py --device cuda         # also peak memory and --batch auto
    python eval/benchmark.py --classifier resnet50 # the fc6 prior driving a torchvision ResNet-50
    python eval/benchmark.py --compile             # also the generator through torch.compile, and its compile time

bf16 is also measured the way it ran before its weights were kept in bf16 ("fp32 weights": autocast converting
every weight on every step), where bf16 is native; everywhere the cost of that conversion is printed.

Every run ends with a planning table: the time (and GPU cost) to visualise every unit of CaffeNet and
ResNet-50 on 1, 8 and 64 devices like this one, from the measured rate and the measured FLOPs per step.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from dgn.models import load_classifier, load_generator
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.throughput import (
    bf16_is_native,
    choose_batch_size,
    cpu_peak,
    peak_flops,
    step_flops,
    use_channels_last,
)


def _time(method, rows: list, steps: int) -> float:
    """Seconds for ``steps`` steps of ``rows``: a DGNAM, an ImageAM or a :class:`VideoRun` (anything with
    ``settings``, ``device`` and ``optimise(rows)``)."""
    method.settings = replace(method.settings, steps=steps)
    sync = torch.cuda.synchronize if method.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    if isinstance(method, DGNAM):
        method.optimise(rows, upper_bound=12.0)
    else:
        method.optimise(rows)
    sync()
    return time.perf_counter() - start


def timed_rate(dgnam, target: str, batch: int, steps: int) -> float:
    """Image-steps per second of full act_max steps (forward + backward + update) on ``batch`` rows.

    A run of ``1 + steps`` steps minus a run of 1 step: that removes set-up and the final iterate's
    evaluation (forward only), which are paid once per run, not per step.
    """
    rows = dgnam.plan([target] * batch)
    return batch * steps / max(_time(dgnam, rows, 1 + steps) - _time(dgnam, rows, 1), 1e-9)


def best_of_rounds(configs: dict[str, tuple], steps: int, rounds: int) -> dict[str, float]:
    """Measure every configuration once per round, interleaved; keep each one's best round."""
    for dgnam, target, batch in configs.values():  # warm-up: allocator, oneDNN/cuDNN kernel choice
        timed_rate(dgnam, target, batch, 1)
    best = {name: 0.0 for name in configs}
    for _ in range(rounds):
        for name, (dgnam, target, batch) in configs.items():
            best[name] = max(best[name], timed_rate(dgnam, target, batch, steps))
    return best


def output_target(module: torch.nn.Module) -> str:
    """Unit 1 of the model's last linear layer (fc8 on CaffeNet, fc on ResNet-50)."""
    from dgn.layers import aliases_for

    last = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    alias = {v: k for k, v in aliases_for(module).items()}.get(last, last)
    return f"{alias}:1"


def unit_count(module: torch.nn.Module) -> int:
    """Units a user could visualise: the output channels of every convolution and linear layer."""
    return sum(m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features
               for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))


def print_plan(rate_by_model: dict[str, tuple[float, float]], restarts: int, steps: int, usd_per_hour: float) -> None:
    """Time and cost to visualise every unit of each model, from measured (image-steps/s, FLOPs per step)."""
    print(f"\nplan: every unit x {restarts} restarts x {steps} steps, at the rate measured here "
          f"(${usd_per_hour:.2f} per device-hour assumed)")
    print(f"{'model':<10} {'units':>7} {'image-steps':>12} {'1 device':>12} {'8 devices':>12} {'64 devices':>12}")
    for name, (rate, _) in rate_by_model.items():
        units = unit_count(load_classifier(name, random_weights=True).module)
        work = units * restarts * steps
        cells = []
        for n in (1, 8, 64):
            hours = work / rate / n / 3600
            cells.append(f"{hours:7.2f} h ${hours * n * usd_per_hour:,.0f}".rjust(12) if hours >= 0.1
                         else f"{hours * 60:6.1f} min".rjust(12))
        print(f"{name:<10} {units:>7,} {work:>12,.0f} " + " ".join(cells))


class VideoRun:
    """The video path in the benchmark's terms: one "row" is a whole video of ``frames`` frames."""

    def __init__(self, device: torch.device, frames: int = 160) -> None:
        from dgn.video import VideoSettings, VideoSynthesizer, load_video_model

        model, _ = load_video_model(random_weights=True)
        self.synth = VideoSynthesizer(load_generator("cifar-deepsim-fc6", random_weights=True), model,
                                      VideoSettings(frames=frames), device)
        self.device, self.frames = self.synth.device, frames

    @property
    def settings(self):
        return self.synth.settings

    @settings.setter
    def settings(self, value) -> None:
        self.synth.settings = value

    def plan(self, targets: list) -> list:
        return list(targets)

    def optimise(self, rows: list) -> None:
        for _ in rows:
            self.synth.run(0)

    def step_flops(self) -> float:
        """FLOPs of one frame-step: twice the forward's (generator + LRCN over the windows)."""
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            codes = self.synth.initial_codes(0).to(self.device)
            self.synth.logits(self.synth.frames_for_model(codes))
        return 2 * counter.get_total_flops() / self.frames


def forward_flops(module: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> float:
    """FLOPs of one forward of one input of ``shape`` (convolutions and matmuls)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, *shape, device=device))
    return counter.get_total_flops()


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 1024, seconds: float = 0.5) -> float:
    """FLOP/s of an n x n matmul in ``dtype``, the most a dense kernel reaches here (best of a few)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best, spent = 0.0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        sync()
        took = time.perf_counter() - start
        best, spent = max(best, 2 * n**3 / took), spent + took
    return best


def weight_count(*models) -> int:
    return sum(p.numel() for m in models for p in m.module.parameters())


def conversion_seconds(gen, clf, device: torch.device) -> float:
    """Seconds to convert every weight of both models to bf16 once, as autocast does each step (best of 3)."""
    params = [p for m in (gen, clf) for p in m.module.parameters()]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        converted = [p.to(torch.bfloat16) for p in params]
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        del converted
    return best


def compiled_configs(configs: dict, gen, clf, device: torch.device, target: str, batch: int,
                     native_bf16: bool) -> dict[str, float]:
    """Add "<precision> b<batch> compiled" configurations, each a DGNAM whose generator runs through
    ``torch.compile`` (the classifier's capture hooks and early stop keep Dynamo from compiling it), compile
    them with one step, and return the seconds each compilation took (none when no compiler can be used)."""
    import shutil

    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        print("--compile: no C++ compiler here (torch.compile's CPU backend needs one); not measured")
        return {}
    seconds = {}
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        own = load_generator(gen.name, random_weights=True)  # compile() changes the module it is called on
        dgnam = DGNAM(own, clf, ActMaxSettings(precision=precision), device)
        dgnam.generator.module.compile()
        name = f"{precision} b{batch} compiled"
        start = time.perf_counter()
        timed_rate(dgnam, target, batch, 1)
        seconds[name] = time.perf_counter() - start
        configs[name] = (dgnam, target, batch)
    return seconds


def share(achieved: float, peak: float | None) -> str:
    return f"{100 * achieved / peak:5.1f}%" if peak else "    ?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classifier", default="caffenet")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,16", help="small,large; large may be 'auto' (from free memory)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: baseline, video, hidden")
    parser.add_argument("--compile", action="store_true",
                        help="also measure the generator through torch.compile (with its compile time)")
    parser.add_argument("--usd-per-hour", type=float, default=3.0, help="device-hour price for the plan")
    args = parser.parse_args()
    device = torch.device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    gen = load_generator("deepsim-fc6", random_weights=True)
    clf = load_classifier(args.classifier, random_weights=True)
    small_text, large_text = args.batches.split(",")
    small = int(small_text)
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"fc6 prior + {args.classifier}; best of {args.rounds} interleaved rounds of {args.steps} steps")
    native_bf16 = device.type == "cuda" or bf16_is_native()
    reference = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if device.type == "cpu":
            print("  " + cpu_peak().describe(precision))
        reference[precision] = matmul_rate(device, dtype)
        print(f"  {precision} 1024x1024 matmul measured: {reference[precision] / 1e9:.1f} GFLOP/s"
              f"{'' if precision == 'fp32' or native_bf16 else ' (no native bf16: reference kernels)'}")

    out = output_target(clf.module)
    configs, flops, large_of = {}, {}, {}
    # DGNAM runs channels-last on a CPU; on a GPU it keeps the contiguous layout: measure the other one beside it
    other_layout = "contiguous" if device.type == "cpu" else "channels-last"

    def with_layout(layout: str, precision: str) -> DGNAM:
        method = DGNAM(load_generator("deepsim-fc6", random_weights=True),
                       load_classifier(args.classifier, random_weights=True), ActMaxSettings(precision=precision), device)
        if layout == "channels-last":
            return use_channels_last(method)
        for module in (method.generator.module, method.classifier.module):
            module.to(memory_format=torch.contiguous_format)
        return method

    for precision in ("fp32", "bf16"):
        dgnam = DGNAM(gen, clf, ActMaxSettings(precision=precision), device)
        flops[precision] = step_flops(dgnam, out)
        configs[f"{precision} b{small}"] = (dgnam, out, small)
        if precision == "bf16" and not native_bf16:
            continue  # measured once below: reference kernels are too slow for rounds at the large batch
        large = choose_batch_size(dgnam, out) if large_text == "auto" else int(large_text)
        large_of[precision] = large
        configs[f"{precision} b{large}"] = (dgnam, out, large)
        configs[f"{precision} b{large} {other_layout}"] = (with_layout(other_layout, precision), out, large)
        if precision == "bf16":  # how bf16 ran before the weights were kept in bf16: autocast converting them
            converting = DGNAM(gen, clf, ActMaxSettings(), device)
            converting.settings = replace(converting.settings, precision="bf16")
            configs[f"bf16 b{large} fp32 weights"] = (converting, out, large)
    large = large_of["fp32"]
    compile_seconds = {}
    if args.compile:
        compile_seconds = compiled_configs(configs, gen, clf, device, out, large, native_bf16)
    hidden = () if "hidden" in skip else (("conv3:5", "conv5:5") if args.classifier == "caffenet"
                                          else ("layer2:5", "layer3:5"))
    full = DGNAM(gen, clf, ActMaxSettings(stop_early=False), device)
    early = DGNAM(gen, clf, ActMaxSettings(stop_early=True), device)
    for target in hidden:
        configs[f"full {target}"] = (full, target, large)
        configs[f"early {target}"] = (early, target, large)
    baseline_flops = {}
    if "baseline" not in skip:
        from dgn.baseline import ImageAM
        from dgn.image_settings import preset
        from dgn.models import input_shape

        alexnet = load_classifier("alexnet", random_weights=True)
        for precision in ("fp32", "bf16"):
            am = ImageAM(alexnet, replace(preset("yosinski-3"), precision=precision), device)
            configs[f"baseline {precision} b{small}"] = (am, "fc8:1", small)
            if precision == "fp32" or native_bf16:
                configs[f"baseline {precision} b{large}"] = (am, "fc8:1", large)
        baseline_flops = 2 * forward_flops(alexnet.module, input_shape(alexnet), device)
    video = None if "video" in skip else VideoRun(device)
    if video is not None:
        configs["video fp32"] = (video, 0, 1)
    slow = {name: cfg for name, cfg in configs.items() if "bf16" in name and not native_bf16}
    fast_configs = {name: cfg for name, cfg in configs.items() if name not in slow}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rate = best_of_rounds(fast_configs, args.steps, args.rounds)
    rate.update(best_of_rounds(slow, 1, 1))

    print(f"\nDGN-AM ({args.classifier}, target {out}): {flops['fp32'] / 1e9:.2f} GFLOP per image-step")
    print(f"{'':24} {'image-steps/s':>13} {'TFLOP/s':>8} {'of peak':>8} {'of matmul':>9}")
    for name in [n for n in rate if n.startswith(("fp32", "bf16"))]:
        precision = name[:4]
        achieved = rate[name] * flops[precision]
        print(f"{name:24} {rate[name]:13.2f} {achieved / 1e12:8.3f} {share(achieved, peak_flops(device, precision)):>8} "
              f"{share(achieved, reference[precision]):>9}")
    r1, r2 = rate[f"fp32 b{small}"], rate[f"fp32 b{large}"]
    print(f"bf16 weights: autocast over fp32 weights converts {weight_count(gen, clf) / 1e6:.0f} M of them on every "
          f"step, {1e3 * conversion_seconds(gen, clf, device):.0f} ms here; dgn keeps them in bf16 instead")
    if f"bf16 b{large} fp32 weights" in rate:
        print(f"bf16 at batch {large}, weights kept in bf16 / converted every step: "
              f"{rate[f'bf16 b{large}'] / rate[f'bf16 b{large} fp32 weights']:.2f}x")
    for name, seconds in compile_seconds.items():
        plain = name.removesuffix(" compiled")
        print(f"{name}: {rate[name] / rate[plain]:.2f}x of eager, after {seconds:.0f} s of compilation")
    print(f"fp32 batch {large} / batch {small}: {r2 / r1:.2f}x;  default / {other_layout} at batch {large}: "
          f"{r2 / rate[f'fp32 b{large} {other_layout}']:.2f}x;  bf16 / fp32 at batch {small}: "
          f"{rate[f'bf16 b{small}'] / r1:.2f}x" + ("" if native_bf16 else " (no native bf16 here)"))
    if f"bf16 b{large}" in rate:
        print(f"bf16 / fp32 at batch {large}: {rate[f'bf16 b{large}'] / r2:.2f}x")
    if device.type == "cuda":
        print(f"all 1000 output units x 200 steps at batch {large}: {1000 * 200 / r2:.1f} s; "
              f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    for target in hidden:
        r_full, r_early = rate[f"full {target}"], rate[f"early {target}"]
        print(f"target {target:8s} batch {large}: full forward {r_full:7.1f}, stopped after the target "
              f"{r_early:7.1f} image-steps/s ({r_early / r_full:.2f}x)")
    if baseline_flops:
        print(f"\nimage-space baseline (yosinski-3, AlexNet): {baseline_flops / 1e9:.2f} GFLOP per image-step")
        for name in [n for n in rate if n.startswith("baseline")]:
            achieved = rate[name] * baseline_flops
            print(f"{name:24} {rate[name]:13.2f} {achieved / 1e12:8.3f} "
                  f"{share(achieved, peak_flops(device, name.split()[1])):>8} {share(achieved, reference[name.split()[1]]):>9}")
    if video is not None:
        per_frame = video.step_flops()
        frames = rate["video fp32"] * video.frames
        achieved = frames * per_frame
        print(f"\nvideo (LRCN world, {video.frames} frames as one batch): {frames:.1f} frame-steps/s, "
              f"{per_frame / 1e6:.1f} MFLOP per frame-step, {achieved / 1e12:.4f} TFLOP/s, "
              f"{share(achieved, peak_flops(device, 'fp32')).strip()} of peak (fp32; the video path has no bf16)")
    best = max(("fp32", "bf16"), key=lambda p: rate.get(f"{p} b{large_of.get(p, 0)}", 0.0))
    print_plan({args.classifier: (rate[f"{best} b{large_of[best]}"], flops[best])}, restarts=4, steps=200,
               usd_per_hour=args.usd_per_hour)


if __name__ == "__main__":
    main()
