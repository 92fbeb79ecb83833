"""Nearest training images of a query image in a layer's feature space (or pixel space).

Features are the memorisation audit's (:func:`dgn.audit.encode`: the classifier's input size, its
pixel space, pre- or post-ReLU as :func:`dgn.encoding.resolve_spaces` decides), and so is the search:
FAISS proposes candidates on float32 copies centred on the base mean, and the candidates are
re-ranked by exact float64 distances (:func:`dgn.audit.exact_distances`), ties to the lower index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dgn.audit import _faiss, exact_distances
from dgn.encoding import encode, resolve_spaces
from dgn.errors import DGNError
from dgn.models import Classifier


@dataclass
class FolderImages:
    """Images of a folder at one size: RGB 0..1 (N, 3, H, W), labels (-1 without class folders), paths."""

    rgb: torch.Tensor
    labels: list[int]
    classes: list[str]
    paths: list[str]


def load_folder(
    root: str | Path, size: tuple[int, int] | None, limit: int | None = None, per_class: int | None = None
) -> FolderImages:
    """The images of ``root`` (class subfolders allowed; dataset order: class, then path).

    Args:
        size: (H, W) to resize every image to (e.g. the classifier's input size).
        limit: keep only the first ``limit`` images (after ``per_class``).
        per_class: keep only the first ``per_class`` images of each class.
    """
    from dgn.data import ImageFolderDataset, load_images

    for name, value in (("--limit", limit), ("--per-class", per_class)):
        if value is not None and value < 1:
            raise DGNError(f"{name} must be at least 1, got {value}")
    dataset = ImageFolderDataset(root)
    picked: list[tuple[Path, int]] = []
    seen: dict[int, int] = {}
    for path, label in dataset.samples:
        if per_class is not None and seen.get(label, 0) >= per_class:
            continue
        seen[label] = seen.get(label, 0) + 1
        picked.append((path, label))
    picked = picked[:limit] if limit is not None else picked
    paths = [str(p) for p, _ in picked]
    return FolderImages(load_images(paths, size), [y for _, y in picked], list(dataset.classes), paths)


def layer_features(classifier: Classifier, rgb: torch.Tensor, layer: str, batch_size: int = 256) -> np.ndarray:
    """Flattened features (N, d) float32 of RGB 0..1 images at ``layer`` (``pixel``, a name or alias, with an
    optional ``:pre`` / ``:post`` suffix; see :func:`dgn.encoding.resolve_spaces`)."""
    (space,) = resolve_spaces(classifier, [layer])
    return encode(classifier, rgb, [space], batch_size)[space.name]


def k_nearest(
    queries: np.ndarray, base: np.ndarray, k: int, candidates: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``base`` rows of each query, nearest first.

    FAISS proposes ``candidates`` rows per query (default ``max(4k, 16)``), found on float32 copies
    centred on the base mean; they are re-ranked by exact float64 Euclidean distance, ties to the
    lower index, so a copy of a base row is found at distance 0 however large its values are.

    Returns:
        (indices (nq, k) into ``base``, distances (nq, k) float64); ``k`` is capped at ``len(base)``.
    """
    if len(base) == 0:
        raise DGNError("the base set of the neighbour search is empty")
    if k < 1:
        raise DGNError(f"k must be at least 1, got {k}")
    if queries.ndim != 2 or queries.shape[1] != base.shape[1]:
        raise DGNError(f"queries of shape {queries.shape} do not match base features of width {base.shape[1]}")
    k = min(k, len(base))
    cand_k = min(len(base), max(k, candidates if candidates is not None else max(4 * k, 16)))
    mean = base.mean(0, dtype=np.float64)
    xb = np.ascontiguousarray(base - mean, dtype=np.float32)
    xq = np.ascontiguousarray(queries - mean, dtype=np.float32)
    _, cand = _faiss().knn(xq, xb, cand_k)
    cand = np.where(cand < 0, 0, cand).astype(np.int64)
    dist = exact_distances(queries, base, cand)
    order = np.stack([np.lexsort((cand[i], dist[i])) for i in range(len(dist))])[:, :k]
    return np.take_along_axis(cand, order, 1), np.take_along_axis(dist, order, 1)


@dataclass
class NeighbourResult:
    """Per query: the indices of its nearest base images and their distances, nearest first."""

    layer: str
    indices: np.ndarray  # (nq, k)
    distances: np.ndarray  # (nq, k) float64


class NearestNeighbours:
    """Retrieve the training images nearest to query images at one layer of a classifier.

    Example::

        nn = NearestNeighbours(load_classifier("cifar-caffenet"), "fc7")
        nn.fit(train_rgb)
        result = nn.query(test_rgb, k=8)
    """

    def __init__(self, classifier: Classifier, layer: str = "fc7", batch_size: int = 256) -> None:
        self.classifier = classifier
        self.layer = layer
        self.batch_size = batch_size
        self.base: np.ndarray | None = None

    def features(self, rgb: torch.Tensor) -> np.ndarray:
        """Features (N, d) of RGB 0..1 images at the layer."""
        return layer_features(self.classifier, rgb, self.layer, self.batch_size)

    def fit(self, rgb: torch.Tensor) -> NearestNeighbours:
        """Encode the images to search among (RGB 0..1, (N, 3, H, W))."""
        self.base = self.features(rgb)
        return self

    def query(self, rgb: torch.Tensor, k: int = 8) -> NeighbourResult:
        """The ``k`` nearest fitted images of each query image."""
        if self.base is None:
            raise DGNError("call fit(images) before query(images)")
        indices, distances = k_nearest(self.features(rgb), self.base, k)
        return NeighbourResult(self.layer, indices, distances)


def _uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def neighbour_montage(
    queries: torch.Tensor, base: torch.Tensor, result: NeighbourResult, tile: int = 96,
    query_labels: Sequence[str] | None = None, base_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """One row per query: the query, then its neighbours, each captioned with its name (``base_labels``,
    e.g. its class; default its index) and its distance."""
    from dgn.render import montage

    images, labels = [], []
    for q in range(len(queries)):
        images.append(_uint8(queries[q]))
        labels.append(query_labels[q] if query_labels else "query")
        for j, d in zip(result.indices[q], result.distances[q]):
            images.append(_uint8(base[int(j)]))
            labels.append(f"{base_labels[int(j)] if base_labels else f'#{int(j)}'} d={d:.3g}")
    return montage(images, labels, columns=1 + result.indices.shape[1], tile=tile)
