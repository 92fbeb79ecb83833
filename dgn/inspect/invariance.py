"""How much each layer's features change when the image is shifted, scaled or rotated (Zeiler & Fergus,
figure 5).

For every image x and transformed version T(x), the Euclidean distance ``|f(T(x)) - f(x)|`` at each
layer, divided by that layer's mean feature norm ``mean_i |f(x_i)|`` over the untransformed images so
that layers of different widths and scales share one axis (0: unchanged; 1: a change as large as a
typical feature vector), averaged over the images; and the probability of the true class (the given
label, or the class predicted on the untransformed image when there is none).

The transformations act in the classifier's own pixel space at its input size (``affine_grid`` +
bilinear ``grid_sample``); pixels coming from outside the image are 0 there, which is the dataset mean
colour in the Caffe and torchvision spaces. ``translate`` moves the image down by N pixels (vertical,
as in the paper; negative: up), ``scale`` zooms by a factor about the centre, ``rotate`` turns it by
degrees about the centre. The identity (0 pixels, factor 1, 0 degrees) is not resampled at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgn import spaces
from dgn.encoding import PIXEL, resolve_spaces
from dgn.errors import DGNError
from dgn.layers import capture
from dgn.models import Classifier, input_shape

KINDS = ("translate", "scale", "rotate")
IDENTITY = {"translate": 0.0, "scale": 1.0, "rotate": 0.0}
UNITS = {"translate": "vertical shift (pixels)", "scale": "scale factor", "rotate": "rotation (degrees)"}


def default_amounts(height: int) -> dict[str, list[float]]:
    """Transformation amounts for an input of ``height`` pixels: shifts up to a quarter of the height,
    scales 0.6..1.8, rotations 0..360 degrees."""
    shifts = sorted({round(f * height) for f in np.linspace(-0.25, 0.25, 9)})
    return {
        "translate": [float(s) for s in shifts],
        "scale": [0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8],
        "rotate": [float(a) for a in range(0, 361, 30)],
    }


def transform(x: torch.Tensor, kind: str, amount: float) -> torch.Tensor:
    """Translate, scale or rotate a batch (B, C, H, W) about its centre; outside pixels are 0.

    Args:
        kind: "translate" (``amount`` pixels downwards), "scale" (zoom factor) or "rotate" (degrees).
    """
    if kind not in KINDS:
        raise DGNError(f"unknown transformation {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "scale" and not amount > 0:
        raise DGNError(f"scale factors must be > 0, got {amount}")
    if float(amount) == IDENTITY[kind]:
        return x
    h, w = x.shape[-2:]
    # theta maps output coordinates to input coordinates, both normalised to [-1, 1]
    if kind == "translate":
        theta = [[1.0, 0.0, 0.0], [0.0, 1.0, -2.0 * amount / h]]
    elif kind == "scale":
        theta = [[1.0 / amount, 0.0, 0.0], [0.0, 1.0 / amount, 0.0]]
    else:
        c, s = math.cos(math.radians(amount)), math.sin(math.radians(amount))
        theta = [[c, -s * h / w, 0.0], [s * w / h, c, 0.0]]
    matrix = torch.tensor(theta, dtype=x.dtype, device=x.device).expand(len(x), 2, 3)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class InvarianceResult:
    """Distances and probabilities per transformation kind and amount.

    Attributes:
        layers: layer names in order.
        amounts: kind -> amounts.
        distance: kind -> layer -> (amounts,) mean distance over the images.
        normalised: kind -> layer -> (amounts,) mean distance / the layer's mean feature norm.
        probability: kind -> (images, amounts) probability of each image's true class.
        feature_norm: layer -> mean feature norm of the untransformed images.
        true_class: per image, the class whose probability is reported.
    """

    layers: list[str]
    amounts: dict[str, list[float]]
    distance: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    normalised: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    probability: dict[str, np.ndarray] = field(default_factory=dict)
    feature_norm: dict[str, float] = field(default_factory=dict)
    true_class: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        """A JSON-ready summary (means over the images)."""
        return {
            "layers": self.layers,
            "feature_norm": self.feature_norm,
            "true_class": self.true_class,
            "kinds": {
                kind: {
                    "amounts": amounts,
                    "distance": {k: v.tolist() for k, v in self.distance[kind].items()},
                    "normalised_distance": {k: v.tolist() for k, v in self.normalised[kind].items()},
                    "true_class_probability": self.probability[kind].mean(0).tolist(),
                }
                for kind, amounts in self.amounts.items()
            },
        }


class InvarianceAnalysis:
    """Feature distances between images and their transformed versions, per layer.

    Args:
        classifier: the network.
        layers: layer names or aliases, each optionally ``:pre`` / ``:post`` (default: every conv and
            fully connected layer, post-ReLU where a ReLU follows; see :func:`dgn.encoding.resolve_spaces`);
            ``pixel`` compares the transformed images themselves.
        batch_size: images per forward pass.
    """

    def __init__(self, classifier: Classifier, layers: Sequence[str] | None = None, batch_size: int = 128) -> None:
        self.classifier = classifier
        found = resolve_spaces(classifier, layers)
        self.spaces = [s for s in found if s.name != PIXEL] if layers is None else found
        self.batch_size = batch_size

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Flattened features per layer and class probabilities of images in the classifier's space."""
        module = self.classifier.module
        modules = list(dict.fromkeys(s.module for s in self.spaces if s.module is not None))
        feats: dict[str, list[torch.Tensor]] = {s.name: [] for s in self.spaces}
        probs = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size]
            with capture(module, modules, stop_early=False) as store:
                logits = module(batch)
            probs.append(torch.softmax(logits.float(), 1).cpu())
            for s in self.spaces:
                value = batch if s.module is None else store[s.module]
                value = torch.relu(value) if s.post_relu else value
                feats[s.name].append(value.flatten(1).double().cpu())
        return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(probs)

    def run(
        self,
        rgb: torch.Tensor,
        labels: Sequence[int] | None = None,
        amounts: Mapping[str, Sequence[float]] | None = None,
    ) -> InvarianceResult:
        """Measure the invariances.

        Args:
            rgb: images, RGB 0..1 (N, 3, H, W) (cropped or resized to the classifier's input by
                :func:`dgn.spaces.convert`).
            labels: true class per image (-1 or None: the class predicted on the image itself).
            amounts: kind -> amounts (default :func:`default_amounts` of the input height).
        """
        if rgb.dim() != 4 or len(rgb) == 0:
            raise DGNError(f"expected a non-empty batch of images (N, 3, H, W), got shape {tuple(rgb.shape)}")
        module = self.classifier.module
        was_training = module.training
        module.eval()
        device = next(iter(module.parameters()), torch.zeros(())).device
        amounts = dict(amounts) if amounts is not None else default_amounts(input_shape(self.classifier)[1])
        for kind in amounts:
            if kind not in KINDS:
                raise DGNError(f"unknown transformation {kind!r}; valid: {', '.join(KINDS)}")
        try:
            x = spaces.convert(rgb.float().to(device), spaces.RGB01, self.classifier.space)
            base, base_probs = self._features(x)
            if labels is None:
                labels = [-1] * len(rgb)
            if len(labels) != len(rgb):
                raise DGNError(f"{len(rgb)} images but {len(labels)} labels")
            predicted = base_probs.argmax(1).tolist()
            true = [int(y) if y >= 0 else p for y, p in zip(labels, predicted)]
            if max(true) >= base_probs.shape[1]:
                raise DGNError(f"label {max(true)} is not a class of a classifier with {base_probs.shape[1]} outputs")
            norms = {k: float(v.norm(dim=1).mean()) for k, v in base.items()}
            result = InvarianceResult([s.name for s in self.spaces], {k: [float(a) for a in v] for k, v in amounts.items()},
                                      feature_norm=norms, true_class=true)
            index = torch.arange(len(true))
            for kind, values in result.amounts.items():
                dist = {k: [] for k in base}
                prob = []
                for amount in values:
                    feats, probs = self._features(transform(x, kind, amount))
                    for k in base:
                        dist[k].append(float((feats[k] - base[k]).norm(dim=1).mean()))
                    prob.append(probs[index, torch.tensor(true)].numpy())
                result.distance[kind] = {k: np.array(v) for k, v in dist.items()}
                result.normalised[kind] = {k: np.array(v) / max(norms[k], 1e-30) for k, v in dist.items()}
                result.probability[kind] = np.stack(prob, 1)
        finally:
            module.train(was_training)
        return result


def plot_invariance(result: InvarianceResult, path: str | Path, title: str = "") -> None:
    """Write a PNG: per transformation, normalised distance vs amount (one line per layer) above the
    mean probability of the true class. Rendered to bytes, then written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dgn.files import atomic_write_bytes

    kinds = list(result.amounts)
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 6.4), squeeze=False, sharex="col")
    colours = plt.cm.viridis(np.linspace(0, 0.95, max(1, len(result.layers))))
    for col, kind in enumerate(kinds):
        xs = result.amounts[kind]
        top, bottom = axes[0, col], axes[1, col]
        for colour, layer in zip(colours, result.layers):
            top.plot(xs, result.normalised[kind][layer], marker=".", color=colour, label=layer)
        top.set_title(kind)
        top.set_ylabel("|f(T(x)) - f(x)| / mean |f(x)|")
        top.grid(alpha=0.3)
        probs = result.probability[kind]
        for row in probs:
            bottom.plot(xs, row, color="grey", alpha=0.15, linewidth=0.8)
        bottom.plot(xs, probs.mean(0), color="black", marker=".", label="mean over images")
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("P(true class)")
        bottom.set_xlabel(UNITS[kind])
        bottom.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
