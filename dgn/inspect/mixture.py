"""The dataset-centric "mixture" (Garon et al., section 3.3): the units a group of images drives hardest,
then one synthetic image that drives all of them at once.

1. Forward the group (e.g. one CIFAR class folder) and average each unit of a layer over the images;
   for a convolutional layer a unit is a channel and its activation the spatial mean of its map.
2. Keep the ``K`` units with the highest mean (ties to the lower index).
3. Maximise the sum of those units, once through the DGN-AM prior (:class:`dgn.synthesis.DGNAM`) and
   once in image space (:class:`dgn.baseline.ImageAM`), with the same :class:`SumOfUnits` objective.

Activations are pre-ReLU by default, as in the core; ``post_relu`` sums rectified values instead (for a
channel: the mean of its rectified map).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dgn import spaces
from dgn.errors import DGNError
from dgn.layers import forward_to, resolve_layer
from dgn.models import Classifier, Generator


def _unit_values(a: torch.Tensor, post_relu: bool) -> torch.Tensor:
    """(B, units): fully connected outputs as they are, conv channels as their spatial mean (of the rectified
    map with ``post_relu``)."""
    a = torch.relu(a) if post_relu else a
    return a.flatten(2).mean(2) if a.dim() > 2 else a


@dataclass
class SumOfUnits:
    """Objective: the sum of some units of one layer, one value per batch row.

    Args:
        layer: canonical layer name (see :func:`dgn.layers.resolve_layer`).
        units: unit (fc) or channel (conv, spatially averaged) indices.
        post_relu: sum rectified activations.
    """

    layer: str
    units: tuple[int, ...]
    post_relu: bool = False
    layers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.units:
            raise DGNError("a sum of units needs at least one unit")
        self.layers = (self.layer,)
        self._index = torch.tensor(self.units, dtype=torch.long)

    def per_unit(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) activations of the units, in the order of ``units``."""
        values = _unit_values(acts[self.layer].float(), self.post_relu)
        return values[:, self._index.to(values.device)]

    def __call__(self, acts: dict[str, torch.Tensor], codes: torch.Tensor | None = None) -> torch.Tensor:
        return self.per_unit(acts).sum(1)


@torch.no_grad()
def unit_means(
    classifier: Classifier, rgb: torch.Tensor, layer: str, post_relu: bool = False, batch_size: int = 128
) -> torch.Tensor:
    """Mean activation of every unit of ``layer`` (channels: spatial mean) over RGB 0..1 images."""
    module = classifier.module
    name = resolve_layer(module, layer)
    device = next(iter(module.parameters()), torch.zeros(())).device
    total = None
    for start in range(0, len(rgb), batch_size):
        x = spaces.convert(rgb[start : start + batch_size].float().to(device), spaces.RGB01, classifier.space)
        values = _unit_values(forward_to(module, x, [name])[name].double(), post_relu)
        total = values.sum(0) if total is None else total + values.sum(0)
    if total is None:
        raise DGNError("the group of images is empty")
    return (total / len(rgb)).float().cpu()


@dataclass
class GroupUnits:
    """The K units a group drives hardest: their indices (descending mean) and their group means."""

    layer: str
    units: list[int]
    means: list[float]

    @property
    def group_sum(self) -> float:
        return float(sum(self.means))


def top_units(
    classifier: Classifier, rgb: torch.Tensor, layer: str, k: int = 5, post_relu: bool = False
) -> GroupUnits:
    """The ``k`` units of ``layer`` with the highest mean activation over the group ``rgb``."""
    means = unit_means(classifier, rgb, layer, post_relu)
    if not 1 <= k <= len(means):
        raise DGNError(f"k must be between 1 and the {len(means)} units of {layer}, got {k}")
    order = torch.sort(-means, stable=True).indices[:k]
    return GroupUnits(resolve_layer(classifier.module, layer), order.tolist(), means[order].tolist())


@torch.no_grad()
def image_sums(classifier: Classifier, rgb: torch.Tensor, units: GroupUnits, post_relu: bool = False,
               batch_size: int = 128) -> torch.Tensor:
    """(N,) each real image's sum of the units (to compare a mixture with the group's best image)."""
    objective = SumOfUnits(units.layer, tuple(units.units), post_relu)
    device = next(iter(classifier.module.parameters()), torch.zeros(())).device
    sums = []
    for start in range(0, len(rgb), batch_size):
        x = spaces.convert(rgb[start : start + batch_size].float().to(device), spaces.RGB01, classifier.space)
        sums.append(objective(forward_to(classifier.module, x, objective.layers)).cpu())
    return torch.cat(sums)


@dataclass
class MixtureImage:
    """One synthesised mixture: the image (in ``space``), the summed activation at the start and end,
    and each unit's final activation."""

    method: str
    image: torch.Tensor
    space: spaces.PixelSpace
    sum_start: float
    sum_end: float
    per_unit: list[float]


def _row(planner, units: GroupUnits, seed: int):
    """One row for the optimiser's bookkeeping (its seed, its view box); the objective replaces its unit."""
    (row,) = planner.plan([f"{units.layer}:{units.units[0]}"], 1, seed)
    return row


def synthesise_dgnam(
    generator: Generator, classifier: Classifier, units: GroupUnits, settings=None, seed: int = 0,
    upper_bound: float | torch.Tensor | None = None, post_relu: bool = False, device: str | None = "auto",
) -> MixtureImage:
    """Maximise the units' sum through the generator prior (DGN-AM), from the act_max start of ``seed``."""
    from dgn.synthesis import DGNAM, ActMaxSettings

    settings = dataclasses.replace(settings or ActMaxSettings(), crop_receptive_field=False)
    dgnam = DGNAM(generator, classifier, settings, device)
    objective = SumOfUnits(units.layer, tuple(units.units), post_relu)
    result = dgnam.optimise([_row(dgnam, units, seed)], upper_bound, objective=objective)
    with torch.no_grad():
        acts = forward_to(classifier.module, dgnam.image_for_classifier(result.codes_last.to(dgnam.device)),
                          objective.layers)
        per_unit = objective.per_unit(acts)[0].cpu().tolist()
    (image,) = dgnam.render(result.codes_last, result.view_boxes)
    return MixtureImage("dgn-am", image, dgnam.output_space, float(result.act_start[0]),
                        float(result.act_end[0]), per_unit)


def synthesise_image_am(
    classifier: Classifier, units: GroupUnits, settings=None, seed: int = 0, post_relu: bool = False,
    device: str | None = "auto",
) -> MixtureImage:
    """Maximise the units' sum in image space (the baseline), with ``settings`` (e.g. a preset)."""
    from dgn.baseline import ImageAM, ImageAMSettings

    settings = dataclasses.replace(settings or ImageAMSettings(), crop_receptive_field=False)
    am = ImageAM(classifier, settings, device)
    objective = SumOfUnits(units.layer, tuple(units.units), post_relu)
    result = am.optimise([_row(am, units, seed)], objective=objective)
    with torch.no_grad():
        acts = forward_to(classifier.module, result.codes_last.to(am.device), objective.layers)
        per_unit = objective.per_unit(acts)[0].cpu().tolist()
    return MixtureImage(f"image-am ({settings.name})", result.codes_last[0], am.output_space,
                        float(result.act_start[0]), float(result.act_end[0]), per_unit)


def mixture_montage(group: torch.Tensor, mixtures: Sequence[MixtureImage], tile: int = 96) -> np.ndarray:
    """Up to 8 images of the group, then each mixture, captioned with its summed activation."""
    from dgn.inspect.neighbours import _uint8
    from dgn.render import montage, to_uint8

    shown = [_uint8(x) for x in group[:8]]
    labels = ["group"] * len(shown)
    for m in mixtures:
        shown.append(to_uint8(m.image, m.space))
        labels.append(f"{m.method.split(' ')[0]} {m.sum_end:.3g}")
    return montage(shown, labels, columns=len(shown), tile=tile)
