"""Preferred videos of an LRCN output unit (DGN-AM paper, section S7), and the frame-order probe.

Synthesis: one generator code per frame (160 by default), optimised jointly so that the LRCN's
target class wins over the whole video. Each step::

    codes (F, code) -> G -> frames in the LRCN's pixel space -> fc6 features of every frame
      -> LSTM over the temporal layout -> fc8 logits at every step
      -> objective: mean over steps of the class's pre-softmax logit (or of its softmax probability)
                    - smoothness * mean_t mean_units (code_{t+1} - code_t)^2
      -> per frame: code += lr * g / mean|g| (act_max's normalised step), clip to [0, ub], x decay

Temporal layouts: ``"continuous"`` runs the F frames as one sequence (state reset only at t = 0);
``"protocol"`` is the LRCN evaluation: 16-frame windows at stride 8, the state reset at each window,
and a window that would run past the end replaced by the last 16 frames (``classify_video.py``), so
160 frames give 20 windows, the last two identical.

The frame-order probe (the paper found LRCN ignores frame order) gives the class probabilities of a
video, and of the same frames shuffled (seeded) and reversed, under the evaluation protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from dgn import spaces
from dgn.engine import ActMaxStep, Problem, optimise, resolve_device
from dgn.errors import DGNError, check_at_least, check_choice, check_decay
from dgn.files import atomic_write_json
from dgn.frames import frames_to_uint8, load_frames, save_gif
from dgn.models import Classifier, Generator, model_record
from dgn.nets.lrcn import LRCN
from dgn.objectives import Objective
from dgn.params import VideoCodes
from dgn.placement import place
from dgn.render import montage, save_png

MODES = ("continuous", "protocol")
OBJECTIVES = ("logit", "softmax")


# ----- temporal layout ----------------------------------------------------------------------------------
def protocol_windows(n_frames: int, length: int = 16, stride: int = 8) -> list[int]:
    """Start frames of the LRCN evaluation windows (``classify_video.py``).

    One window per offset 0, stride, 2*stride, ... < ``n_frames``; a window that would not end before the
    video does is replaced by the last ``length`` frames. Shorter videos give one window starting at 0
    (its missing frames are the last frame repeated, see :func:`window_index`).
    """
    if n_frames < 1 or length < 1 or stride < 1:
        raise DGNError(f"frames, window length and stride must be >= 1, got {n_frames}, {length}, {stride}")
    return [i if i + length < n_frames else max(n_frames - length, 0) for i in range(0, n_frames, stride)]


def window_index(n_frames: int, length: int = 16, stride: int = 8) -> torch.Tensor:
    """Frame indices (windows, length) of the evaluation windows; short videos repeat their last frame."""
    starts = protocol_windows(n_frames, length, stride)
    index = torch.tensor(starts).view(-1, 1) + torch.arange(length).view(1, -1)
    return index.clamp_max(n_frames - 1)


def layout(n_frames: int, mode: str, length: int = 16, stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-major frame indices (T, N) and clip markers (T, N) of a temporal mode.

    ``continuous``: one stream of all frames, reset at t = 0. ``protocol``: one stream per evaluation
    window (N = windows, T = length), each reset at its first step.
    """
    if mode not in MODES:
        raise DGNError(f"unknown temporal mode {mode!r}; valid: {', '.join(MODES)}")
    if mode == "continuous":
        index = torch.arange(n_frames).view(-1, 1)
    else:
        index = window_index(n_frames, length, stride).t().contiguous()
    cont = torch.ones(index.shape)
    cont[0] = 0
    return index, cont


def lrcn_of(model: Classifier) -> LRCN:
    """The LRCN inside a classifier, or a DGNError naming what it is instead."""
    if not isinstance(model.module, LRCN):
        raise DGNError(f"{model.name!r} is not an LRCN (a video model); use video-lrcn-shapes or an LRCN caffemodel")
    return model.module


def video_logits(model: Classifier, frames: torch.Tensor, mode: str, length: int = 16, stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (T, N, K) of frames (F, 3, H, W) in the model's space under a temporal mode, and the (T, N) index."""
    lrcn = lrcn_of(model)
    index, cont = layout(frames.shape[0], mode, length, stride)
    feats = lrcn.features(frames)
    index, cont = index.to(feats.device), cont.to(feats.device)
    return lrcn.sequence(feats[index], cont), index


def frame_probabilities(probs: torch.Tensor, index: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Per-frame class probabilities (F, K): each frame's per-step softmax averaged over its occurrences."""
    k = probs.shape[-1]
    total = torch.zeros(n_frames, k, dtype=probs.dtype, device=probs.device)
    total.index_add_(0, index.reshape(-1), probs.reshape(-1, k))
    counts = torch.bincount(index.reshape(-1), minlength=n_frames).clamp_min(1).to(probs)
    return total / counts.view(-1, 1)


@torch.no_grad()
def class_probabilities(
    model: Classifier, frames: torch.Tensor, mode: str = "protocol", length: int = 16, stride: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The video's class probabilities: mean softmax over all steps (LRCN's evaluation), and per frame.

    Args:
        frames: (F, 3, H, W) in the model's pixel space and size.

    Returns:
        (mean (K,), per_frame (F, K)).
    """
    logits, index = video_logits(model, frames, mode, length, stride)
    probs = torch.softmax(logits.float(), -1)
    return probs.reshape(-1, probs.shape[-1]).mean(0), frame_probabilities(probs, index, frames.shape[0])


# ----- frames in and out ----------------------------------------------------------------------------------
def order_probe(
    model: Classifier, frames: torch.Tensor, seed: int = 0, mode: str = "protocol",
    class_names: Sequence[str] | None = None, device: torch.device | str | None = None,
) -> dict:
    """Class probabilities of a video in its order, shuffled (seeded) and reversed.

    Args:
        frames: (F, 3, H, W) in the model's pixel space and size.
        seed: seed of the shuffle.
        device: where to run (default: where ``frames`` are).

    Returns:
        ``{"original"|"shuffled"|"reversed": {"probs": [...], "top": index, "top_name": ..., "p_top": ...},
        "permutation": [...], "mode": ...}``.
    """
    n = frames.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    orders = {"original": torch.arange(n), "shuffled": perm, "reversed": torch.arange(n - 1, -1, -1)}
    frames = frames.to(device) if device is not None else frames
    out: dict = {"mode": mode, "frames": n, "seed": seed, "permutation": perm.tolist()}
    for name, order in orders.items():
        mean, _ = class_probabilities(model, frames[order.to(frames.device)], mode)
        top = int(mean.argmax())
        out[name] = {"probs": [round(float(p), 6) for p in mean], "top": top, "p_top": float(mean[top]),
                     "top_name": class_names[top] if class_names and top < len(class_names) else str(top)}
    return out


def probe_video(model: Classifier, source: str | Path, seed: int = 0, mode: str = "protocol",
                class_names: Sequence[str] | None = None, device: str | torch.device | None = None) -> dict:
    """:func:`order_probe` on a GIF or folder of frames (each frame resized to the model's input)."""
    rgb = load_frames(source)
    frames = spaces.convert(rgb, spaces.RGB01, model.space, mode="resize")
    result = order_probe(model, frames, seed, mode, class_names, device)
    result["source"] = str(source)
    result["frame_size"] = list(rgb.shape[-2:])
    return result


# ----- models -------------------------------------------------------------------------------------------------
VIDEO_MODELS = ("video-lrcn-shapes", "lrcn-ucf101")


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line; UCF-101's ``classInd.txt`` ("1 ApplyEyeMakeup") works as is."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DGNError(f"cannot read class names from {path}: {err}") from None
    return [line.split()[-1] for line in lines if line.strip()]


def load_video_model(
    name: str = "video-lrcn-shapes", caffemodel: str | Path | None = None, random_weights: bool = False,
    seed: int = 0, weights_dir: str | None = None,
) -> tuple[Classifier, list[str]]:
    """An LRCN as a :class:`~dgn.models.Classifier`, with its class names.

    ``video-lrcn-shapes``: the shipped model of the offline moving-shapes world. ``lrcn-ucf101``: the released
    RGB LRCN, from its ``.caffemodel`` (``RGB_lstm_model_iter_30000.caffemodel``) or seeded random weights.
    """
    if name == "video-lrcn-shapes":
        from dgn.data_video import SHAPE_CLASSES
        from dgn.models import load_classifier

        if caffemodel is not None:
            raise DGNError("--caffemodel is for --model lrcn-ucf101; video-lrcn-shapes ships with dgn")
        return load_classifier(name, random_weights, seed, weights_dir), list(SHAPE_CLASSES)
    if name == "lrcn-ucf101":
        from dgn.caffe.lrcn import load_lrcn_caffemodel
        from dgn.files import sha256_file
        from dgn.nets.lrcn import LRCN_UCF101_SPACE, lrcn_ucf101

        if caffemodel is None and not random_weights:
            raise DGNError("lrcn-ucf101 needs its weights: --caffemodel RGB_lstm_model_iter_30000.caffemodel "
                           "(from the LRCN project page), or --random-weights")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = lrcn_ucf101()
        if caffemodel is not None:
            load_lrcn_caffemodel(caffemodel, module)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        sha = sha256_file(caffemodel) if caffemodel is not None else f"random:{seed}"
        return Classifier(module, LRCN_UCF101_SPACE, name, sha), []
    raise DGNError(f"unknown video model {name!r}; valid: {', '.join(VIDEO_MODELS)}")


# ----- synthesis ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoSettings:
    """Settings of a video synthesis (optimisation defaults: the original act_max).

    Attributes:
        frames: frames of the video (one code each).
        mode: temporal layout, "protocol" (default: the windows the LRCN is evaluated on; through the first
            CIFAR prior 7 of 8 classes came out on top this way, 6 of 8 with "continuous"; 6 of 8 with
            the second) or "continuous".
        objective: "logit" (mean pre-softmax logit of the class over steps) or "softmax" (mean probability).
        smoothness: weight of the penalty mean_t mean_units (code_{t+1} - code_t)^2 (0 = off).
        shared_start: every frame starts from the same code (seed ``seed``) instead of one seed per frame.
        steps, lr_start, lr_end, decay, lower_bound: the act_max loop (see ``dgn.synthesis.ActMaxSettings``).
        window, stride: the evaluation windows of the "protocol" mode.
        fit_mode: how generator frames are fitted to the LRCN's input size (``spaces.fit``).
    """

    frames: int = 160
    mode: str = "protocol"
    objective: str = "logit"
    smoothness: float = 0.0
    shared_start: bool = False
    steps: int = 200
    lr_start: float = 8.0
    lr_end: float = 1e-10
    decay: float = 0.99
    lower_bound: float | None = 0.0
    window: int = 16
    stride: int = 8
    fit_mode: str = "auto"

    def __post_init__(self) -> None:
        check_at_least("frames", self.frames, 1)
        check_at_least("steps", self.steps, 1)
        check_choice("temporal mode", self.mode, MODES)
        check_choice("video objective", self.objective, OBJECTIVES)
        if self.smoothness < 0 or not math.isfinite(self.smoothness):
            raise DGNError(f"smoothness must be a finite number >= 0, got {self.smoothness}")
        check_decay(self.decay)

    def lr(self, step: int) -> float:
        return self.lr_start + (self.lr_end - self.lr_start) * step / self.steps


@dataclass
class VideoResult:
    """A synthesised video: the codes of its frames and how well it drives the class."""

    class_index: int
    codes: torch.Tensor  # (F, *code_shape): the last iterate (as act_max returns it)
    codes_best: torch.Tensor
    objective_start: float
    objective_end: float
    objective_best: float
    best_step: int
    score_end: float  # the class term alone (mean logit or mean softmax), without the smoothness penalty
    extras: dict = field(default_factory=dict)


class VideoClassObjective(Objective):
    """A video's class score (mean logit or mean softmax over the layout's steps and windows) minus
    ``smoothness`` times the mean squared difference of consecutive frames' codes.

    Reads ``acts["logits"]`` (time, windows, classes) of one video; ``params``: (1, F, *code_shape).
    """

    layers = ("logits",)

    def __init__(self, class_index: int, kind: str = "logit", smoothness: float = 0.0) -> None:
        self.class_index, self.kind, self.smoothness = class_index, kind, smoothness

    def score(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The class term alone (a scalar)."""
        logits = acts["logits"]
        if self.kind == "logit":
            return logits[..., self.class_index].mean()
        return torch.softmax(logits, -1)[..., self.class_index].mean()

    def __call__(self, acts: dict[str, torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        value = self.score(acts)
        if self.smoothness > 0 and params is not None and params.shape[1] > 1:
            codes = params[0]
            value = value - self.smoothness * (codes[1:] - codes[:-1]).pow(2).mean()
        return value.view(1)


class VideoSynthesizer:
    """Optimise one generator code per frame so an LRCN's class unit fires over the whole video.

    Args:
        generator: the image prior (e.g. ``load_generator("cifar-deepsim-fc6")``).
        model: a classifier wrapping an :class:`~dgn.nets.lrcn.LRCN` (e.g. ``load_video_model(...)``).
        settings: see :class:`VideoSettings`.
        device: "auto", "cpu", "cuda", ...
    """

    def __init__(self, generator: Generator, model: Classifier, settings: VideoSettings | None = None,
                 device: str | torch.device | None = "auto") -> None:
        self.settings = settings or VideoSettings()
        self.device = resolve_device(device)
        lrcn_of(model)  # a clear error before anything moves
        # channels-last on a CPU: 1.35-1.6x frame-steps/s on the LRCN world (two paired runs, 2-core AMD EPYC)
        self.generator = replace(generator, module=place(generator.module, self.device))
        self.model = replace(model, module=place(model.module, self.device))
        self.lrcn = lrcn_of(self.model)
        index, cont = layout(self.settings.frames, self.settings.mode, self.settings.window, self.settings.stride)
        self._index, self._cont = index.to(self.device), cont.to(self.device)

    def check_class(self, class_index: int) -> int:
        classes = self.lrcn.config.num_classes
        if not 0 <= class_index < classes:
            raise DGNError(f"class {class_index} is out of range for {self.model.name!r}; valid: 0..{classes - 1}")
        return class_index

    def codes(self, upper_bound: float | torch.Tensor | None = None) -> VideoCodes:
        """The parameterisation: one code per frame of a video, in the settings' box."""
        s = self.settings
        return VideoCodes(self.generator, self.model.space, s.fit_mode, s.lower_bound, upper_bound, s.decay,
                          self.device, frames=s.frames)

    def frames_for_model(self, codes: torch.Tensor) -> torch.Tensor:
        """G(codes) (F, *code_shape) in the LRCN's pixel space and input size."""
        return self.codes().to_image(codes[None])

    def logits(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The LRCN's logits (time, windows, classes) of frames in its pixel space, in the temporal layout."""
        return {"logits": self.lrcn.sequence(self.lrcn.features(frames)[self._index], self._cont)}

    def objective(self, class_index: int) -> VideoClassObjective:
        """The objective of a video of ``class_index``: its class score minus the smoothness penalty."""
        return VideoClassObjective(class_index, self.settings.objective, self.settings.smoothness)

    def terms(self, codes: torch.Tensor, class_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective, class score) of a video's codes (F, *code_shape): the score minus the smoothness penalty."""
        objective = self.objective(class_index)
        acts = self.logits(self.frames_for_model(codes))
        return objective(acts, codes[None])[0], objective.score(acts)

    def initial_codes(self, seed: int) -> torch.Tensor:
        """Per-frame N(0, 1) codes (frame f from seed ``seed + f``), or one shared code with ``shared_start``."""
        return self.codes().start([seed], self.settings.shared_start)[0].cpu()

    def run(self, class_index: int, seed: int = 0, upper_bound: float | torch.Tensor | None = None,
            codes: torch.Tensor | None = None, progress: Callable[[int], None] | None = None) -> VideoResult:
        """Synthesise a video for one class.

        Args:
            class_index: the LRCN output unit.
            seed: seed of the initial codes.
            upper_bound: scalar or per-code-unit bounds (None: the generator's default scalar).
            codes: initial codes (F, *code_shape) instead of the seeded ones.
            progress: called with 1 after each step.
        """
        s = self.settings
        self.check_class(class_index)
        shape = self.generator.code_shape
        code = (codes if codes is not None else self.initial_codes(seed)).to(self.device, torch.float32).clone()
        if tuple(code.shape) != (s.frames, *shape):
            raise DGNError(f"initial codes must have shape {(s.frames, *shape)}, got {tuple(code.shape)}")
        param = self.codes(upper_bound)
        objective = self.objective(class_index)
        problem = Problem(  # one row: the video, its frames' codes along the second dimension
            start=code[None],
            image=param.to_image,
            forward=self.logits,
            objective=objective,
            step=ActMaxStep(s.lr_start, s.lr_end, s.steps, per="frame"),
            project=param.project,
        )
        track = optimise(problem, s.steps, progress=progress)
        with torch.no_grad():
            score = objective.score(self.logits(self.frames_for_model(track.last[0])))
        return VideoResult(
            class_index, track.last[0].cpu(), track.best[0].cpu(), float(track.act_start[0]), float(track.act_end[0]),
            float(track.act_best[0]), int(track.best_step[0]), float(score),
        )

    @torch.no_grad()
    def render(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(generator images (F, 3, h, w) in the generator's space, the same frames in the LRCN's space)."""
        images = self.generator(codes.to(self.device)).float()
        frames = spaces.convert(images, self.generator.space, self.model.space, self.settings.fit_mode)
        return images.cpu(), frames

    def describe(self) -> dict:
        """The configuration, for a manifest."""
        return {
            "method": "dgn-am-video",
            "generator": model_record(self.generator),
            "model": model_record(self.model),
            "settings": asdict(self.settings),
            "device": str(self.device),
        }


def write_video(
    out: str | Path, synth: VideoSynthesizer, result: VideoResult, class_names: Sequence[str] = (),
    seed: int = 0, fps: float = 10.0, extra: dict | None = None,
) -> dict:
    """Write ``video.gif``, ``strip.png``, ``frames/frame_NNN.png`` and ``manifest.json``; return the manifest.

    The frames are decoded faithfully (mean added back), so a probe of ``frames/`` sees what the LRCN saw
    up to 8-bit rounding. The manifest holds the settings, the objective at the start and end, the mean
    and per-frame class probabilities (evaluation protocol and the synthesis mode), and the order probe.
    """
    out = Path(out)
    images, frames = synth.render(result.codes)
    pictures = frames_to_uint8(images, synth.generator.space)
    for i, picture in enumerate(pictures):
        save_png(out / "frames" / f"frame_{i:03d}.png", picture)
    scale = max(1, 128 // max(pictures[0].shape[:2]))
    save_gif(out / "video.gif", pictures, fps, scale)
    k = result.class_index

    def name(index: int) -> str:
        return class_names[index] if index < len(class_names) else str(index)

    s = synth.settings
    mean_protocol, per_frame = class_probabilities(synth.model, frames, "protocol", s.window, s.stride)
    mean_mode = mean_protocol if s.mode == "protocol" else class_probabilities(synth.model, frames, s.mode, s.window, s.stride)[0]
    columns = min(len(pictures), 16)
    labels = [f"{i} p={float(per_frame[i, k]):.2f}" for i in range(len(pictures))]
    save_png(out / "strip.png", montage(pictures, labels, columns=columns, tile=64))
    probe = order_probe(synth.model, frames, seed, "protocol", class_names)
    manifest = {
        "class": k,
        "class_name": name(k),
        "seed": seed,
        "config": synth.describe(),
        "objective": s.objective,
        "objective_start": result.objective_start,
        "objective_end": result.objective_end,
        "objective_best": result.objective_best,
        "best_step": result.best_step,
        "score_end": result.score_end,
        "class_probability": {"protocol": float(mean_protocol[k]), s.mode: float(mean_mode[k])},
        "top_class": {"index": int(mean_protocol.argmax()), "name": name(int(mean_protocol.argmax()))},
        "mean_probabilities": {name(i): round(float(p), 6) for i, p in enumerate(mean_protocol)},
        "per_frame_probabilities": [[round(float(p), 5) for p in row] for row in per_frame],
        "per_frame_class_probability": [round(float(p), 5) for p in per_frame[:, k]],
        "order_probe": {key: probe[key] for key in ("original", "shuffled", "reversed")},
        "files": {"gif": "video.gif", "strip": "strip.png", "frames": "frames/"},
        **(extra or {}),
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
