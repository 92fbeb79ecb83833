"""Feature evolution during training (Zeiler & Fergus, figure 4; DGN-AM supplement S6): the same targets,
synthesised from the same seeds, for every checkpoint of one training run, laid out as one strip per
target with each checkpoint's validation accuracy beneath.

Checkpoint format (``dgn-checkpoint/1``): a folder of ``*.safetensors`` files, each the state dict of
one registered architecture (e.g. ``cifar-caffenet``), with string metadata

- ``format``: ``dgn-checkpoint/1``;
- ``architecture``: the architecture name (``dgn.models.ARCHITECTURES``);
- ``epoch``: an integer (0 = before training), which orders the checkpoints;
- ``val_accuracy``: the held-out top-1 accuracy as a fraction, e.g. ``0.5312``;
- optionally ``val_images`` (how many images the accuracy was measured on).

:func:`save_checkpoint` writes one; ``training/train_evolution_checkpoints.py`` makes a run of them.

One generator is used for every checkpoint. With the shipped ``cifar-deepsim-fc6``, note that the prior
was trained on the *final* classifier's fc6: early checkpoints are seen through a prior that is not
theirs, so their strips show what that prior can express for their units, not their own code space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dgn.errors import DGNError
from dgn.models import Classifier, Generator

FORMAT = "dgn-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file and its metadata."""

    path: Path
    architecture: str
    epoch: int
    val_accuracy: float

    @property
    def label(self) -> str:
        return f"ep{self.epoch} {100 * self.val_accuracy:.1f}%"


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], architecture: str, epoch: int,
                    val_accuracy: float, val_images: int | None = None) -> None:
    """Write a ``dgn-checkpoint/1`` safetensors file atomically (see the module docstring)."""
    from safetensors.torch import save_file

    from dgn.files import atomic_write

    metadata = {"format": FORMAT, "architecture": architecture, "epoch": str(int(epoch)),
                "val_accuracy": f"{float(val_accuracy):.6f}"}
    if val_images is not None:
        metadata["val_images"] = str(int(val_images))
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_checkpoints(folder: str | Path) -> list[Checkpoint]:
    """The checkpoints of a folder, by epoch (then file name); all must share one architecture."""
    from safetensors import SafetensorError, safe_open

    root = Path(folder)
    if not root.is_dir():
        raise DGNError(f"checkpoint folder {root} does not exist or is not a directory")
    found = []
    for path in sorted(root.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
        except (OSError, SafetensorError) as err:
            raise DGNError(f"cannot read checkpoint {path}: {err}") from None
        missing = [k for k in ("architecture", "epoch", "val_accuracy") if k not in meta]
        if missing:
            raise DGNError(f"{path.name} lacks metadata {', '.join(missing)} (format {FORMAT}; see dgn.inspect.evolution)")
        try:
            found.append(Checkpoint(path, meta["architecture"], int(meta["epoch"]), float(meta["val_accuracy"])))
        except ValueError:
            raise DGNError(f"{path.name}: epoch {meta['epoch']!r} / val_accuracy {meta['val_accuracy']!r} "
                           "are not numbers") from None
    if not found:
        raise DGNError(f"no *.safetensors checkpoints in {root}")
    architectures = sorted({c.architecture for c in found})
    if len(architectures) > 1:
        raise DGNError(f"checkpoints in {root} mix architectures: {', '.join(architectures)}")
    return sorted(found, key=lambda c: (c.epoch, c.path.name))


def load_checkpoint(checkpoint: Checkpoint) -> Classifier:
    """The classifier of one checkpoint (eval mode, frozen), in its architecture's pixel space."""
    from safetensors.torch import load_file

    from dgn.models import load_checked, load_classifier, state_dict_sha256

    state = load_file(str(checkpoint.path))
    classifier = load_classifier(checkpoint.architecture, random_weights=True)  # the architecture, then its weights
    load_checked(classifier.module, state, checkpoint.path.name)
    classifier.name = f"{checkpoint.architecture}@epoch{checkpoint.epoch}"
    classifier.weights_sha256 = state_dict_sha256(state)
    return classifier


@dataclass
class EvolutionResult:
    """Per target (rows) and checkpoint (columns): the image (generator space) and final activation."""

    targets: list[str]
    checkpoints: list[Checkpoint]
    images: list[list[torch.Tensor]]
    activations: np.ndarray  # (targets, checkpoints)


def feature_evolution(
    generator: Generator, checkpoints: Sequence[Checkpoint], targets: Sequence[str], settings=None,
    seed: int = 0, upper_bound: float | torch.Tensor | None = None, device: str | None = "auto",
    progress=None,
) -> EvolutionResult:
    """Synthesise ``targets`` with DGN-AM for every checkpoint, every time from the start of ``seed``.

    Args:
        progress: called as ``progress(done, total)`` after each checkpoint.
    """
    from dgn.synthesis import DGNAM

    if not checkpoints:
        raise DGNError("no checkpoints given")
    if not targets:
        raise DGNError("no targets given; write at least one, e.g. fc8:3")
    columns, acts = [], []
    for done, checkpoint in enumerate(checkpoints, 1):
        dgnam = DGNAM(generator, load_checkpoint(checkpoint), settings, device)
        result = dgnam.synthesize(list(targets), 1, seed, batch_size=len(targets), upper_bound=upper_bound)
        columns.append(dgnam.render(result.codes_last, result.view_boxes))
        acts.append(result.act_end.numpy())
        if progress is not None:
            progress(done, len(checkpoints))
    images = [[columns[c][t] for c in range(len(checkpoints))] for t in range(len(targets))]
    return EvolutionResult(list(targets), list(checkpoints), images, np.stack(acts, 1))


def evolution_picture(result: EvolutionResult, space, tile: int = 80) -> np.ndarray:
    """One strip per target (its name at the left), one column per checkpoint, ``epoch accuracy`` beneath."""
    from PIL import Image, ImageDraw

    from dgn.render import montage, to_uint8

    cells = [to_uint8(image, space) for strip in result.images for image in strip]
    labels = [c.label for _ in result.targets for c in result.checkpoints]
    grid = montage(cells, labels, columns=len(result.checkpoints), tile=tile)
    margin = 70
    canvas = Image.new("RGB", (grid.shape[1] + margin, grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = grid.shape[0] / len(result.targets)
    for i, target in enumerate(result.targets):
        draw.text((4, int(i * row_height + row_height / 2) - 6), target[:11], fill=(0, 0, 0))
    return np.asarray(canvas)
