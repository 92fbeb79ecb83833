"""Occlusion sensitivity and the correspondence measure (Zeiler & Fergus, seed 003, figure 7 and table 1).

:class:`Occlusion` slides a grey square over an image, batched under ``torch.no_grad``, and maps, for
each position of the square, the probability of a target class, the most probable label, and the
total (rectified) activation of one feature map. The grey is the pixel-space mean: zero in the Caffe
mean-subtracted and torchvision-normalised spaces (mid-grey in a space without a mean).

:func:`correspondence` is table 1's measure: for images of one class with the same part occluded
(at a position given per image), the sign of each image's feature change
``sign(f(x_i) - f(occluded x_i))`` is compared between every pair of images by the Hamming
distance (the share of feature elements whose signs differ); the mean over pairs is reported with
its standard deviation. Lower means the part changes the features in the same way across images;
random occluder positions are the control.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dgn.errors import DGNError
from dgn.layers import capture, forward_to, resolve_layer
from dgn.spaces import PixelSpace, from_rgb01
from dgn.targets import parse_target


def grey_value(space: PixelSpace | None, channels: int = 3) -> torch.Tensor:
    """The occluder's per-channel value in ``space``: its mean pixel (0 when the space subtracts a mean).

    A space without a mean (plain RGB 0..1) gets mid-grey; no space at all gets zeros.
    """
    if space is None:
        return torch.zeros(channels)
    if any(space.mean):
        return torch.zeros(space.channels)
    return from_rgb01(torch.full((1, 3, 1, 1), 0.5), space).flatten()


def occluder_positions(height: int, width: int, size: int, stride: int) -> tuple[list[int], list[int]]:
    """Top-left rows and columns of a ``size`` square moved by ``stride`` inside an image.

    Raises:
        DGNError: the square is larger than the image, or size/stride are not positive.
    """
    if size < 1 or stride < 1:
        raise DGNError(f"occluder size and stride must be at least 1, got size {size}, stride {stride}")
    if size > min(height, width):
        raise DGNError(f"occluder size {size} is larger than the {height}x{width} image")
    return list(range(0, height - size + 1, stride)), list(range(0, width - size + 1, stride))


@dataclass
class OcclusionMaps:
    """What :meth:`Occlusion.attribute` measured, one value per occluder position (rows ``ys``, columns ``xs``).

    Attributes:
        probability: (len(ys), len(xs)) probability of ``target`` with the square at each position.
        label: (len(ys), len(xs)) the most probable class there.
        feature: (len(ys), len(xs)) total rectified activation of the feature map, or None.
        ys, xs: top-left corners of the square.
        size: side of the square.
        target: the class whose probability is mapped.
        feature_name: ``LAYER:CHANNEL`` of the feature map, or None.
        clean_probability, clean_label, clean_feature: the same quantities without occlusion.
        classes: how many classes the model outputs.
    """

    probability: torch.Tensor
    label: torch.Tensor
    feature: torch.Tensor | None
    ys: list[int]
    xs: list[int]
    size: int
    target: int
    feature_name: str | None
    clean_probability: float
    clean_label: int
    clean_feature: float | None
    classes: int


class Occlusion:
    """Occlusion sensitivity of a classifier's output and of one feature map.

    Args:
        model: the classifier; its output is taken as logits (softmax gives probabilities).
        space: the pixel space of its input (gives the occluder's grey); None means zeros.
        size: side of the grey square in input pixels.
        stride: step between positions.
        batch_size: occluded images per forward pass.
    """

    def __init__(
        self, model: nn.Module, space: PixelSpace | None = None, size: int = 8, stride: int = 2, batch_size: int = 64
    ) -> None:
        if batch_size < 1:
            raise DGNError(f"batch size must be at least 1, got {batch_size}")
        self.model = model
        self.space = space
        self.size = size
        self.stride = stride
        self.batch_size = batch_size

    def _feature_spec(self, feature: str | None) -> tuple[str, int | None] | None:
        if feature is None:
            return None
        if ":" not in feature:
            return resolve_layer(self.model, feature), None
        spec = parse_target(feature)
        if spec.position is not None:
            raise DGNError(f"a feature map is LAYER or LAYER:CHANNEL (the whole map is summed), not {feature!r}")
        return resolve_layer(self.model, spec.layer), spec.unit

    def _run(self, batch: torch.Tensor, layer: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Probabilities (B, K) and the layer's rectified output (or None) for one batch."""
        if layer is None:
            return torch.softmax(self.model(batch).float(), dim=1), None
        with capture(self.model, [layer], stop_early=False) as store:
            logits = self.model(batch)
        maps = store[layer].float().clamp(min=0)
        if maps.dim() != 4:
            raise DGNError(f"feature layer {layer!r} has output shape {tuple(maps.shape[1:])}; a feature map needs (C, H, W)")
        return torch.softmax(logits.float(), dim=1), maps

    @torch.no_grad()
    def attribute(self, image: torch.Tensor, target: int | None = None, feature: str | None = None) -> OcclusionMaps:
        """Slide the square over one image.

        Args:
            image: (C, H, W) or (1, C, H, W) in the model's pixel space.
            target: the class whose probability is mapped (default: the clean image's top class).
            feature: ``LAYER:CHANNEL`` whose total activation is mapped; ``LAYER`` alone picks the channel
                with the largest total activation on the clean image (as the paper did); None skips it.

        Raises:
            DGNError: bad square, target class or feature map.
        """
        if image.dim() == 4:
            if image.shape[0] != 1:
                raise DGNError(f"occlusion takes one image at a time, got a batch of {image.shape[0]}")
            image = image[0]
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else image.device
        image = image.to(device)
        channels, height, width = image.shape
        ys, xs = occluder_positions(height, width, self.size, self.stride)
        spec = self._feature_spec(feature)
        layer = spec[0] if spec else None
        probs, maps = self._run(image[None], layer)
        classes = probs.shape[1]
        clean_label = int(probs[0].argmax())
        target = clean_label if target is None else int(target)
        if not 0 <= target < classes:
            raise DGNError(f"target class {target} out of range: valid classes are 0..{classes - 1}")
        channel = None
        if spec is not None:
            channel = spec[1] if spec[1] is not None else int(maps[0].sum(dim=(1, 2)).argmax())
            if not 0 <= channel < maps.shape[1]:
                raise DGNError(f"channel {channel} out of range for {feature!r}: valid channels are 0..{maps.shape[1] - 1}")
        grey = grey_value(self.space, channels).to(image).view(-1, 1, 1)
        positions = list(itertools.product(ys, xs))
        probability, label, total = [], [], []
        for start in range(0, len(positions), self.batch_size):
            chunk = positions[start : start + self.batch_size]
            batch = image.expand(len(chunk), -1, -1, -1).clone()
            for row, (y, x) in enumerate(chunk):
                batch[row, :, y : y + self.size, x : x + self.size] = grey
            p, m = self._run(batch, layer)
            probability.append(p[:, target].cpu())
            label.append(p.argmax(dim=1).cpu())
            if m is not None:
                total.append(m[:, channel].sum(dim=(1, 2)).cpu())
        shape = (len(ys), len(xs))
        return OcclusionMaps(
            probability=torch.cat(probability).view(shape),
            label=torch.cat(label).view(shape),
            feature=torch.cat(total).view(shape) if total else None,
            ys=ys,
            xs=xs,
            size=self.size,
            target=target,
            feature_name=f"{layer}:{channel}" if spec else None,
            clean_probability=float(probs[0, target]),
            clean_label=clean_label,
            clean_feature=float(maps[0, channel].sum()) if spec else None,
            classes=classes,
        )


# ----- correspondence (table 1) ---------------------------------------------------------------------


def occlude(images: torch.Tensor, positions: Sequence[tuple[int, int]], size: int, grey: torch.Tensor) -> torch.Tensor:
    """A copy of ``images`` (N, C, H, W) with a ``size`` square of ``grey`` (C,) at each image's (top, left)."""
    if len(positions) != images.shape[0]:
        raise DGNError(f"{len(positions)} occluder positions for {images.shape[0]} images; give one per image")
    height, width = images.shape[-2:]
    out = images.clone()
    fill = grey.to(images).view(-1, 1, 1)
    for i, (y, x) in enumerate(positions):
        if not (0 <= y <= height - size and 0 <= x <= width - size):
            raise DGNError(f"occluder at ({y}, {x}) of size {size} does not fit the {height}x{width} image")
        out[i, :, y : y + size, x : x + size] = fill
    return out


def random_positions(count: int, height: int, width: int, size: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` uniformly random top-left corners of a ``size`` square inside the image (seeded)."""
    occluder_positions(height, width, size, 1)
    generator = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, height - size + 1, (count,), generator=generator)
    xs = torch.randint(0, width - size + 1, (count,), generator=generator)
    return [(int(y), int(x)) for y, x in zip(ys, xs)]


def sign_hamming(signs: torch.Tensor) -> torch.Tensor:
    """Normalised Hamming distances between the rows of ``signs`` (N, D), one per pair i < j."""
    n = signs.shape[0]
    if n < 2:
        raise DGNError(f"the correspondence measure needs at least 2 images, got {n}")
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return torch.stack([(signs[i] != signs[j]).float().mean() for i, j in pairs])


@torch.no_grad()
def correspondence(
    model: nn.Module,
    images: torch.Tensor,
    positions: Sequence[tuple[int, int]],
    size: int,
    layer: str,
    space: PixelSpace | None = None,
    rectify: bool = True,
) -> tuple[float, float]:
    """Table 1's mean feature sign change: lower = the occluded part changes features consistently.

    Args:
        model: the classifier.
        images: (N, C, H, W), N >= 2, in its pixel space (e.g. images of one class).
        positions: per image, the (top, left) of the square over the same part.
        size: side of the square.
        layer: the layer whose features are compared (name or alias).
        space: gives the occluder's grey (see :func:`grey_value`).
        rectify: compare the features after the layer's ReLU (what the next layer sees); False: before.

    Returns:
        (mean, std) over image pairs of the normalised Hamming distance between
        ``sign(f(x_i) - f(occluded x_i))`` and the same for image j.
    """
    name = resolve_layer(model, layer)
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    images = images.to(device)
    occluded = occlude(images, positions, size, grey_value(space, images.shape[1]))
    both = forward_to(model, torch.cat([images, occluded]), [name])[name].flatten(1).float()
    if rectify:
        both = both.clamp(min=0)
    clean, hidden = both.chunk(2)
    distances = sign_hamming(torch.sign(clean - hidden))
    std = float(distances.std()) if len(distances) > 1 else 0.0
    return float(distances.mean()), std


# ----- display --------------------------------------------------------------------------------------


def occlusion_figure(image: np.ndarray, maps: OcclusionMaps, class_names: Sequence[str]) -> np.ndarray:
    """Figure 7's panels: input, feature-map activation, target probability, most probable label (HxWx3 uint8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    half = (maps.size - 1) / 2  # the centre of a square whose top-left pixel is (y, x)
    step_y = (maps.ys[1] - maps.ys[0]) if len(maps.ys) > 1 else 1
    step_x = (maps.xs[1] - maps.xs[0]) if len(maps.xs) > 1 else 1
    # each map value drawn at the centre of its square
    extent = (maps.xs[0] + half - step_x / 2, maps.xs[-1] + half + step_x / 2,
              maps.ys[-1] + half + step_y / 2, maps.ys[0] + half - step_y / 2)
    panels = 4 if maps.feature is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4), dpi=100)
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title(f"input: {class_names[maps.clean_label]}", fontsize=9)
    k = 1
    if maps.feature is not None:
        shown = axes[k].imshow(maps.feature.numpy(), cmap="jet", extent=extent, interpolation="nearest")
        axes[k].set_title(f"total activation {maps.feature_name}", fontsize=9)
        fig.colorbar(shown, ax=axes[k], fraction=0.046)
        k += 1
    shown = axes[k].imshow(maps.probability.numpy(), cmap="jet", extent=extent, interpolation="nearest", vmin=0)
    axes[k].set_title(f"p({class_names[maps.target]}), clean {maps.clean_probability:.2f}", fontsize=9)
    fig.colorbar(shown, ax=axes[k], fraction=0.046)
    present = sorted(set(maps.label.flatten().tolist()))
    palette = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    colours = np.array([palette(i % palette.N)[:3] for i in range(len(class_names))])
    axes[k + 1].imshow(colours[maps.label.numpy()], extent=extent, interpolation="nearest")
    axes[k + 1].set_title("most probable label", fontsize=9)
    axes[k + 1].legend(handles=[Patch(color=colours[c], label=class_names[c]) for c in present][:10],
                       fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in axes:  # every panel in input-pixel coordinates, so the maps line up with the input
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return array
