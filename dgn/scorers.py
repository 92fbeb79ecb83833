"""What scores an evolving population's images: a classifier's units, any Python callable, or a closed loop
through files with a recording rig; and the noise of a recorded neuron.

- :class:`ModelScorer`: each image's own target unit of a classifier, without gradients (the same targets
  and values as DGN-AM, so gradient-based and gradient-free runs compare on one target).
- :class:`CallableScorer`: ``scores = f(images)`` for any black box; ``images`` is (N, H, W, 3) uint8 RGB.
- :class:`FileScorer`: the closed-loop protocol below, for experiments with a rig in another process.
- :class:`Noise`: trial-to-trial noise added to clean scores (Gaussian at a signal-to-noise ratio, or
  Poisson counts), to evaluate optimisers as if the unit were recorded.

**The file protocol.** For each generation the run writes, atomically (a temporary folder renamed),
``LOOP/<generation>/`` holding one PNG per image and ``images.json``: ``{"generation": name, "images":
[{"id": ..., "file": ..., "target": ...}, ...], "scores": "scores.csv"}``. The rig shows the images and
writes ``LOOP/<generation>/scores.csv`` (best atomically: to another name, then renamed), one line per
presentation: ``image_id,score[,repeat]`` (a header line ``image_id,score,repeat`` is allowed; repeated
presentations of an image are averaged). The run waits for that file, up to a timeout. A run that stops
and resumes finds the generation's folder already there and does not write it again; a rig that stops
and restarts finds the generations without ``scores.csv`` (:func:`pending_generations`). So neither side
loses or repeats a generation.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dgn import spaces
from dgn.errors import DGNError
from dgn.layers import forward_to
from dgn.models import Classifier
from dgn.objectives import TargetValues
from dgn.targets import Target

Tensor = torch.Tensor
SCORES_FILE = "scores.csv"
IMAGES_FILE = "images.json"
NOISE_KINDS = ("gaussian", "poisson")


class ModelScorer:
    """Each image's own target of ``classifier`` (pre-ReLU unless ``post_relu``), computed without gradients.

    Args:
        classifier: the network whose units are scored.
        fit_mode: how images are fitted to its input (``spaces.fit``).
        post_relu, stop_early: as in DGN-AM's settings.
    """

    def __init__(self, classifier: Classifier, fit_mode: str = "auto", post_relu: bool = False,
                 stop_early: bool = True) -> None:
        self.classifier, self.fit_mode, self.post_relu, self.stop_early = classifier, fit_mode, post_relu, stop_early

    @torch.no_grad()
    def score_images(self, images: Tensor, space: spaces.PixelSpace, targets: Sequence[Target]) -> Tensor:
        """(N,) values of ``targets[i]`` for ``images[i]`` (given in ``space``)."""
        values = TargetValues(targets)
        layers = tuple(dict.fromkeys(t.layer for t in targets))
        seen = spaces.convert(images, space, self.classifier.space, self.fit_mode)
        return values.gather(forward_to(self.classifier.module, seen, layers, self.stop_early), self.post_relu)

    def describe(self) -> dict:
        return {"scorer": "model", "post_relu": self.post_relu}


def check_scores(scores: object, count: int, source: str) -> Tensor:
    """Scores from a black box as an (N,) or (N, K) float tensor, or a one-line error naming what is wrong."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise DGNError(f"{source} returned scores that are not numbers") from None
    if array.ndim not in (1, 2) or array.shape[0] != count:
        raise DGNError(f"{source} returned scores of shape {array.shape} for {count} images; expected ({count},) "
                       f"or ({count}, channels)")
    if not np.isfinite(array).all():
        raise DGNError(f"{source} returned NaN or infinite scores")
    return torch.from_numpy(array).float()


def pick_channels(scores: Tensor, targets: Sequence[Target]) -> Tensor:
    """(N,) scores: the column of each image's target unit when a black box answers (N, channels)."""
    if scores.dim() == 1:
        return scores
    units = torch.tensor([t.unit for t in targets])
    if int(units.max()) >= scores.shape[1]:
        raise DGNError(f"the scorer answered {scores.shape[1]} channels but a target asks for unit {int(units.max())}")
    return scores[torch.arange(len(targets)), units]


class CallableScorer:
    """``f(images)``: images (N, H, W, 3) uint8 RGB -> (N,) scores, or (N, channels) where each image's target
    unit picks its channel (a recording of many channels at once)."""

    def __init__(self, function: Callable[[np.ndarray], object]) -> None:
        self.function = function

    def score_rgb(self, images: np.ndarray, ids: Sequence[str], targets: Sequence[Target], name: str) -> Tensor:
        return pick_channels(check_scores(self.function(images), len(images), "the scoring function"), targets)

    def describe(self) -> dict:
        return {"scorer": "callable", "function": getattr(self.function, "__qualname__", repr(self.function))}


class FileScorer:
    """The closed loop through files (see the module docstring).

    Args:
        folder: the loop folder shared with the rig.
        timeout: seconds to wait for a generation's scores before giving up.
        poll: seconds between looks for the scores file.
    """

    def __init__(self, folder: str | Path, timeout: float = 3600.0, poll: float = 0.2) -> None:
        if timeout <= 0 or poll <= 0:
            raise DGNError(f"timeout and poll must be > 0, got {timeout} and {poll}")
        self.folder, self.timeout, self.poll = Path(folder), timeout, poll

    def score_rgb(self, images: np.ndarray, ids: Sequence[str], targets: Sequence[Target], name: str) -> Tensor:
        here = self.folder / name
        if not (here / IMAGES_FILE).exists():  # a resumed run finds the generation it had already shown
            write_generation(self.folder, name, images, ids, [str(t) for t in targets])
        scores = here / SCORES_FILE
        waited = time.monotonic()
        while not scores.exists():
            if time.monotonic() - waited > self.timeout:
                raise DGNError(f"no scores for generation {name} after {self.timeout:g} s: the rig writes {scores} "
                               "(CSV lines image_id,score[,repeat]); resume with --resume when it is back")
            time.sleep(self.poll)
        return read_scores(scores, ids)

    def describe(self) -> dict:
        return {"scorer": "files", "folder": str(self.folder), "timeout": self.timeout}


def write_generation(folder: Path, name: str, images: np.ndarray, ids: Sequence[str], targets: Sequence[str]) -> Path:
    """Write one generation's PNGs and ``images.json`` to ``folder/name``, atomically (a renamed temp folder)."""
    final = folder / name
    temporary = folder / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    entries = []
    for image, image_id, target in zip(images, ids, targets):
        Image.fromarray(image).save(temporary / f"{image_id}.png")
        entries.append({"id": image_id, "file": f"{image_id}.png", "target": target})
    (temporary / IMAGES_FILE).write_text(json.dumps({"generation": name, "images": entries, "scores": SCORES_FILE},
                                                    indent=1))
    os.replace(temporary, final)
    return final


def read_scores(path: Path, ids: Sequence[str]) -> Tensor:
    """The mean score of each of ``ids`` from a scores CSV (``image_id,score[,repeat]``), or a one-line error."""
    wanted = {image_id: i for i, image_id in enumerate(ids)}
    sums, counts = [0.0] * len(ids), [0] * len(ids)
    text = path.read_text()
    for number, fields in enumerate(csv.reader(io.StringIO(text)), 1):
        if not fields or not "".join(fields).strip():
            continue
        if number == 1 and fields[0].strip().lower() in ("image_id", "id"):
            continue
        if len(fields) not in (2, 3):
            raise DGNError(f"{path}, line {number}: expected image_id,score[,repeat], got {len(fields)} fields")
        image_id, value = fields[0].strip(), fields[1].strip()
        if image_id not in wanted:
            raise DGNError(f"{path}, line {number}: unknown image id {image_id!r} (not in this generation)")
        try:
            score = float(value)
        except ValueError:
            raise DGNError(f"{path}, line {number}: score {value!r} is not a number") from None
        if not math.isfinite(score):
            raise DGNError(f"{path}, line {number}: score {value!r} is not finite")
        sums[wanted[image_id]] += score
        counts[wanted[image_id]] += 1
    missing = [image_id for image_id, i in wanted.items() if counts[i] == 0]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DGNError(f"{path} has no score for {len(missing)} of {len(ids)} images ({shown}); a partial file? "
                       "the rig should write it whole, then rename it")
    return torch.tensor([s / c for s, c in zip(sums, counts)], dtype=torch.float32)


def pending_generations(folder: str | Path) -> list[Path]:
    """The rig's side: generation folders in ``folder`` still waiting for their scores, oldest first."""
    found = [p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")
             and (p / IMAGES_FILE).exists() and not (p / SCORES_FILE).exists()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def answer_generation(generation: Path, score: Callable[[np.ndarray, list[dict]], Sequence[float]]) -> None:
    """The rig's side: score one generation folder with ``score(images (N,H,W,3) uint8, entries)`` and write its
    ``scores.csv`` atomically (a reference for rig code, and the simulated rig of the tests)."""
    entries = json.loads((generation / IMAGES_FILE).read_text())["images"]
    images = np.stack([np.asarray(Image.open(generation / e["file"]).convert("RGB")) for e in entries])
    values = score(images, entries)
    lines = ["image_id,score"] + [f"{e['id']},{float(v)!r}" for e, v in zip(entries, values)]
    temporary = generation / f".{SCORES_FILE}.tmp-{os.getpid()}"
    temporary.write_text("\n".join(lines) + "\n")
    os.replace(temporary, generation / SCORES_FILE)


class Noise:
    """Trial-to-trial noise on clean scores (rows, P), each row from its own random stream.

    ``gaussian:SNR``: add N(0, s^2) with s = (the standard deviation of the row's first-generation clean scores)
    / SNR, fixed for the run (SNR 1: noise as large as the spread of responses to random codes, a typical
    single trial). ``poisson:GAIN``: a spike count, Poisson(GAIN * max(score, 0)) / GAIN.
    """

    def __init__(self, spec: str, seeds: Sequence[int]) -> None:
        kind, _, level = spec.partition(":")
        try:
            value = float(level)
        except ValueError:
            value = -1.0
        if kind not in NOISE_KINDS or value <= 0:
            raise DGNError(f"noise {spec!r}: write gaussian:SNR or poisson:GAIN with a positive number")
        self.spec, self.kind, self.level = spec, kind, value
        self.generators = [torch.Generator().manual_seed(int(s) * 1_000_003 + 3) for s in seeds]
        self.scale: Tensor | None = None

    def __call__(self, clean: Tensor) -> Tensor:
        clean = clean.float().cpu()
        if self.kind == "poisson":
            rate = clean.clamp_min(0) * self.level
            return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rate, self.generators)]) / self.level
        if self.scale is None:
            self.scale = clean.std(dim=1, unbiased=False).clamp_min(1e-12) / self.level
        draws = torch.stack([torch.randn(clean.shape[1], generator=g) for g in self.generators])
        return clean + self.scale[:, None] * draws

    def state(self) -> dict[str, Tensor]:
        state = {"noise_generators": torch.stack([g.get_state() for g in self.generators])}
        if self.scale is not None:
            state["noise_scale"] = self.scale
        return state

    def load_state(self, state: dict[str, Tensor]) -> None:
        for g, s in zip(self.generators, state["noise_generators"]):
            g.set_state(s.clone())
        self.scale = state.get("noise_scale")
