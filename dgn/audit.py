"""Memorisation audit (Figure S22 of DGN-AM): nearest training images of synthetic images.

For each synthetic image of class Y, find the closest training image of class Y in pixel space
(RGB 0..1 at the encoder's input size) and in each code space of the encoder, and show them side
by side. The training set is streamed one class at a time: its images go through the encoder once,
with every chosen layer hooked, and only (id, distance) survives the class. FAISS (``faiss.knn``)
proposes ``k`` candidates; they are re-ranked with explicit float64 differences, because FAISS's
float32 ``|x|^2 + |y|^2 - 2<x, y>`` expansion reports near copies of large vectors at wrong
distances (often 0). Candidates are proposed after subtracting the class's training mean, so a
common offset cannot change them. Each distance gets a scale: the median nearest-neighbour distance
of held-out real images of the same class to that class's training set, per space; an image is
flagged when any of its distances is below ``threshold * scale``.

The library never prints; pass ``progress(stage, done, total)`` to follow it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch  # imported before faiss (see the FAISS notes): faiss is imported lazily below
import torch.distributed as dist

from dgn import spaces
from dgn.distributed import World
from dgn.encoding import Space, encode, resolve_spaces
from dgn.errors import DGNError
from dgn.models import Classifier

Progress = Callable[[str, int, int], None]


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise DGNError("the memorisation audit needs faiss (pip install faiss-cpu)") from None
    return faiss


# ----------------------------------------------------------------------------------------------
# image sets


@dataclass
class ImageSet:
    """Images with class labels, loaded on demand (so a class can be streamed).

    Attributes:
        ids: one id per image (e.g. a path relative to the set's root).
        labels: class index per image.
        loader: indices -> RGB 0..1 tensor (n, 3, H, W) at the audit size.
        paths: file path per image, when the images are files.
    """

    ids: list[str]
    labels: list[int]
    loader: Callable[[list[int]], torch.Tensor]
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def indices_of(self, label: int) -> list[int]:
        """Indices of the images of class ``label``."""
        return [i for i, y in enumerate(self.labels) if y == label]

    def subset(self, indices: Sequence[int]) -> ImageSet:
        """The images at ``indices`` (in that order)."""
        idx = list(indices)
        return ImageSet(
            [self.ids[i] for i in idx],
            [self.labels[i] for i in idx],
            lambda sel: self.loader([idx[i] for i in sel]),
            [self.paths[i] for i in idx] if self.paths else [],
        )

    @classmethod
    def from_tensors(cls, images: torch.Tensor, labels: Sequence[int], ids: Sequence[str] | None = None) -> ImageSet:
        """Images already in memory (RGB 0..1, (N, 3, H, W))."""
        if len(images) != len(labels):
            raise DGNError(f"{len(images)} images but {len(labels)} labels")
        names = list(ids) if ids is not None else [str(i) for i in range(len(images))]
        return cls(names, [int(y) for y in labels], lambda sel: images[list(sel)])

    @classmethod
    def from_folder(cls, root: str | Path, size: tuple[int, int] | None) -> tuple[ImageSet, list[str]]:
        """An image folder with class subfolders (class index = sorted subfolder order).

        Returns:
            The set (ids are paths relative to ``root``) and the class names.
        """
        from dgn.data import ImageFolderDataset, load_images

        dataset = ImageFolderDataset(root)
        if not dataset.classes:
            raise DGNError(f"{root} has no class subfolders; the audit needs root/<class>/<image>")
        paths = [str(p) for p in dataset.paths]
        ids = [str(Path(p).relative_to(dataset.root)) for p in paths]
        return cls(ids, dataset.labels, lambda sel: load_images([paths[i] for i in sel], size), paths), dataset.classes


def synthetic_from_run(
    run_dir: str | Path,
    size: tuple[int, int] | None,
    class_of_row: Mapping[str, int] | Callable[[dict], int | None] | None = None,
    weights_dir: str | None = None,
) -> ImageSet:
    """The synthetic images of a ``dgn`` run directory, with their classes, as the generator made them.

    A run's PNGs are display mappings: the default act_max display (``clip(x, -120, 120) / 240 + 0.5``)
    shifts colours and contrast and cannot be inverted where it clips. So the images are regenerated from
    the run's saved codes with the generator the manifest records (its weights checked by sha256), cropped
    to each row's view box; an image-space run's codes are the images themselves. Without the generator the
    PNGs are read as RGB only when the run wrote them with the ``mean`` display (``(x + mean) / 255``) or the
    folder is not a dgn run (a manifest without a configuration); anything else is refused.

    Args:
        run_dir: a run directory (``manifest.json`` + images and codes).
        size: (H, W) to load the images at.
        class_of_row: row key -> class, or a function row -> class (None skips the row). Default: the
            unit of rows of layer ``fc8``; other rows are skipped.
        weights_dir: where to look for the generator's weights besides the cache.

    Returns:
        The images (ids are row keys, paths the image files).
    """
    from dgn.outputs import read_manifest

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    chosen = []
    for row in manifest["rows"]:
        if callable(class_of_row):
            label = class_of_row(row)
        elif class_of_row is not None:
            label = class_of_row.get(row.get("key", row["image"]))
        else:
            label = int(row["unit"]) if row.get("layer") == "fc8" else None
        if label is not None:
            chosen.append((row, int(label)))
    if not chosen:
        raise DGNError(f"no synthetic images with a class in {run_dir} (only fc8 rows have one by default)")
    ids = [str(row.get("key", row["image"])) for row, _ in chosen]
    labels = [label for _, label in chosen]
    paths = [str(run_dir / row["image"]) for row, _ in chosen]
    loader = _run_image_loader(run_dir, manifest, [row for row, _ in chosen], size, weights_dir)
    return ImageSet(ids, labels, loader, paths)


def _run_image_loader(run_dir: Path, manifest: dict, rows: list[dict], size: tuple[int, int] | None,
                      weights_dir: str | None) -> Callable[[list[int]], torch.Tensor]:
    """indices -> RGB 0..1 images of ``rows``: regenerated from codes where possible, else the PNGs (see
    :func:`synthetic_from_run`)."""
    from dgn.data import load_images

    config = manifest.get("config") or {}
    display = manifest.get("display", config.get("display"))
    render = _code_renderer(config, weights_dir) if all(row.get("code") for row in rows) else None
    if render is None:
        if config and display != "mean":
            raise DGNError(f"cannot audit {run_dir}: its images use the {display or 'unrecorded'} display, which "
                           f"cannot be inverted, and its codes cannot be regenerated here ({_generator_hint(config)})")
        paths = [str(run_dir / row["image"]) for row in rows]
        return lambda sel: load_images([paths[i] for i in sel], size)

    def load(sel: list[int]) -> torch.Tensor:
        from safetensors.torch import load_file

        images = [render(load_file(run_dir / rows[i]["code"])["last"], rows[i].get("view_box")) for i in sel]
        return torch.stack([spaces.fit(image[None], size, "resize")[0] if size else image for image in images])

    return load


def _generator_hint(config: dict) -> str:
    generator = config.get("generator") or {}
    return f"generator {generator.get('name')!r} is not available" if generator else "no generator recorded"


def _code_renderer(config: dict, weights_dir: str | None) -> Callable[[torch.Tensor, list | None], torch.Tensor] | None:
    """code, view box -> RGB 0..1 image (3, h, w) as the run's method made it, or None when it cannot."""
    from dgn.models import load_generator

    method = config.get("method")
    if method == "image-am":  # the codes are the images, in the classifier's pixel space
        space = spaces.get_space(config["classifier"]["space"])

        def crop_image(code: torch.Tensor, box: list | None) -> torch.Tensor:
            return _crop(spaces.convert(code[None].float(), space, spaces.RGB01)[0].clamp(0, 1), box)

        return crop_image
    record = config.get("generator") or {}
    if method != "dgn-am" or not record.get("name") or str(record.get("weights_sha256", "")).startswith("random"):
        return None
    try:
        generator = load_generator(record["name"], weights_dir=weights_dir)
    except DGNError:
        return None
    if generator.weights_sha256 != record.get("weights_sha256"):
        raise DGNError(f"the run was made with other {record['name']} weights (sha256 {record.get('weights_sha256')}) "
                       f"than those found here ({generator.weights_sha256})")
    generator.module.eval()

    @torch.no_grad()
    def generate(code: torch.Tensor, box: list | None) -> torch.Tensor:
        image = generator(code[None].float())
        return _crop(spaces.convert(image, generator.space, spaces.RGB01)[0].clamp(0, 1), box)

    return generate


def _crop(image: torch.Tensor, box: list | None) -> torch.Tensor:
    if not box:
        return image
    top, left, h, w = box
    return image[:, top : top + h, left : left + w]


# ----------------------------------------------------------------------------------------------
# search


def exact_distances(queries: np.ndarray, base: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Euclidean distances from each query to its candidates, with explicit float64 differences.

    Args:
        queries: (nq, d).
        base: (nb, d).
        candidates: (nq, k) indices into ``base``.

    Returns:
        (nq, k) float64 distances.
    """
    out = np.empty(candidates.shape, np.float64)
    for i in range(len(queries)):
        diff = base[candidates[i]].astype(np.float64) - queries[i].astype(np.float64)[None, :]
        out[i] = np.sqrt(np.einsum("kd,kd->k", diff, diff))
    return out


def ranked_candidates(queries: np.ndarray, base: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` FAISS candidates in ``base``, re-ranked by exact float64 distance.

    Candidates come from ``faiss.knn`` on float32 copies centred on the base mean (computed in
    float64), so adding one offset to queries and base changes none of them. Ties: the smaller index
    first, so results are deterministic.

    Args:
        queries: (nq, d).
        base: (nb, d), nb >= 1.
        k: candidates per query (capped at nb).

    Returns:
        (indices (nq, k) into ``base``, exact distances (nq, k) float64), nearest first.
    """
    if len(base) == 0:
        raise DGNError("nearest: the base set is empty")
    k = max(1, min(int(k), len(base)))
    if len(queries) == 0:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float64)
    faiss = _faiss()
    mean = base.mean(0, dtype=np.float64)
    xb = np.ascontiguousarray(base - mean, dtype=np.float32)
    xq = np.ascontiguousarray(queries - mean, dtype=np.float32)
    _, cand = faiss.knn(xq, xb, k)
    cand = np.where(cand < 0, 0, cand).astype(np.int64)
    dist = exact_distances(queries, base, cand)
    order = np.stack([np.lexsort((cand[i], dist[i])) for i in range(len(dist))])
    return np.take_along_axis(cand, order, 1), np.take_along_axis(dist, order, 1)


def nearest(queries: np.ndarray, base: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The nearest ``base`` row of each query: FAISS candidates, exact float64 re-ranking.

    See :func:`ranked_candidates`.

    Returns:
        (indices (nq,) into ``base``, exact distances (nq,) float64).
    """
    cand, dist = ranked_candidates(queries, base, k)
    return cand[:, 0], dist[:, 0]


# ----------------------------------------------------------------------------------------------
# the audit


@dataclass
class AuditResult:
    """What :meth:`MemorisationAudit.audit` found.

    Attributes:
        spaces: the spaces searched, in order.
        items: one dict per synthetic image: ``id``, ``path``, ``class``, ``nearest`` (space ->
            ``{"index", "id", "path", "distance", "scale", "ratio"}``), ``nearest_any_class`` (when
            asked; the same plus ``class``), ``flagged`` (None without scales), ``flagged_spaces``.
        scales: class -> space -> median held-out nearest-neighbour distance (empty without held-out).
        config: k, threshold, layers, all_classes.
    """

    spaces: list[Space]
    items: list[dict[str, Any]]
    scales: dict[int, dict[str, float]]
    config: dict[str, Any]

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per space: median synthetic distance, median scale, median ratio (distance / scale)."""
        out: dict[str, dict[str, float | None]] = {}
        for s in self.spaces:
            d = [it["nearest"][s.name]["distance"] for it in self.items]
            sc = [v[s.name] for v in self.scales.values() if s.name in v]
            r = [it["nearest"][s.name]["ratio"] for it in self.items if it["nearest"][s.name]["ratio"] is not None]
            out[s.name] = {
                "median_distance": float(np.median(d)) if d else None,
                "median_scale": float(np.median(sc)) if sc else None,
                "median_ratio": float(np.median(r)) if r else None,
            }
        return out

    def to_json(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """A JSON-ready dict (the content of ``audit.json``)."""
        name = (lambda c: class_names[c]) if class_names else (lambda c: str(c))
        return {
            "config": self.config,
            "spaces": [{"name": s.name, "module": s.module, "post_relu": s.post_relu} for s in self.spaces],
            "classes": list(class_names) if class_names else None,
            "scales": {name(c): v for c, v in sorted(self.scales.items())},
            "summary": self.summary(),
            "flagged": sum(bool(it["flagged"]) for it in self.items),
            "items": self.items,
        }


class MemorisationAudit:
    """Nearest training images of synthetic images, per class, in pixel space and code spaces.

    Args:
        encoder: the classifier whose layers define the code spaces.
        layers: see :func:`resolve_spaces` (default: pixel + every Conv2d/Linear layer).
        k: FAISS candidates per query, re-ranked exactly.
        all_classes: also search the whole training set.
        threshold: flag an image when a distance is below ``threshold * scale``.
        batch_size: images per encoder forward pass.
    """

    def __init__(
        self,
        encoder: Classifier,
        layers: Sequence[str] | None = None,
        k: int = 10,
        all_classes: bool = False,
        threshold: float = 0.5,
        batch_size: int = 256,
    ) -> None:
        if k < 1:
            raise DGNError(f"k must be at least 1, got {k}")
        if threshold < 0:
            raise DGNError(f"threshold must be >= 0, got {threshold}")
        self.encoder = encoder
        self.spaces = resolve_spaces(encoder, layers)
        self.k = k
        self.all_classes = all_classes
        self.threshold = threshold
        self.batch_size = batch_size

    def _encode(self, images: ImageSet, indices: list[int]) -> dict[str, np.ndarray]:
        parts = [
            encode(self.encoder, images.loader(indices[i : i + self.batch_size]), self.spaces, self.batch_size)
            for i in range(0, len(indices), self.batch_size)
        ]
        return {s.name: np.concatenate([p[s.name] for p in parts]) for s in self.spaces}

    def audit(
        self,
        synthetic: ImageSet,
        train: ImageSet,
        heldout: ImageSet | None = None,
        progress: Progress | None = None,
        world: World | None = None,
    ) -> AuditResult:
        """Run the audit.

        Args:
            synthetic: the synthetic images and their classes.
            train: the training images (streamed one class at a time).
            heldout: real images not trained on, for the per-class scales (optional).
            progress: called as ``progress("class", done, total)`` after each class this process scans.
            world: in a torchrun run, this rank's place: the classes are split across ranks and every
                rank gets the merged result (default: one process).

        Returns:
            An :class:`AuditResult`.
        """
        names = [s.name for s in self.spaces]
        train_classes = sorted(set(train.labels))
        missing = sorted(set(synthetic.labels) - set(train_classes))
        if missing:
            raise DGNError(f"synthetic images of class(es) {missing} have no training images")
        world = world or World()
        mine = train_classes[world.rank :: world.size]  # a class's training set is scanned by one rank
        found = self._scan(synthetic, train, heldout, mine, progress)
        if world.distributed:
            gathered: list[Any] = [None] * world.size
            dist.all_gather_object(gathered, found)
            found = _merge_scans(gathered)
        nearest_of, scales, best_any = found
        items: list[dict[str, Any]] = [
            {
                "id": synthetic.ids[i],
                "path": synthetic.paths[i] if synthetic.paths else None,
                "class": synthetic.labels[i],
                "nearest": {n: nearest_of[n][i] for n in names},
            }
            for i in range(len(synthetic))
        ]
        for i, it in enumerate(items):
            sc = scales.get(it["class"], {})
            flagged_spaces = []
            for n in names:
                hit = it["nearest"][n]
                scale = sc.get(n)
                hit["scale"] = scale
                hit["ratio"] = hit["distance"] / scale if scale else None
                if scale is not None and hit["distance"] < self.threshold * scale:
                    flagged_spaces.append(n)
            it["flagged"] = bool(flagged_spaces) if sc else None
            it["flagged_spaces"] = flagged_spaces
            if self.all_classes:
                it["nearest_any_class"] = {n: best_any[n][i] for n in names}
        config = {"k": self.k, "threshold": self.threshold, "all_classes": self.all_classes, "layers": names}
        return AuditResult(list(self.spaces), items, scales, config)

    def _scan(self, synthetic: ImageSet, train: ImageSet, heldout: ImageSet | None, classes: Sequence[int],
              progress: Progress | None) -> tuple[dict, dict, dict]:
        """Search the training images of ``classes``: each synthetic image's nearest same-class image,
        the held-out scales, and (``all_classes``) the nearest image over these classes, per space."""
        names = [s.name for s in self.spaces]
        q_codes = self._encode(synthetic, list(range(len(synthetic))))
        q_alone = _AloneCodes(self, synthetic, range(len(synthetic)))
        nearest_of: dict[str, list[dict[str, Any] | None]] = {n: [None] * len(synthetic) for n in names}
        best_any: dict[str, list[dict[str, Any] | None]] = {n: [None] * len(synthetic) for n in names}
        scales: dict[int, dict[str, float]] = {}
        for done, c in enumerate(classes, 1):
            t_idx = train.indices_of(c)
            base = self._encode(train, t_idx)
            t_alone = _AloneCodes(self, train, t_idx)
            same = [i for i, y in enumerate(synthetic.labels) if y == c]
            h_idx = heldout.indices_of(c) if heldout is not None else []
            h_codes = self._encode(heldout, h_idx) if h_idx else None
            for n in names:
                if same:
                    cand, dist_ = ranked_candidates(q_codes[n][same], base[n], self.k)
                    for row, i in enumerate(same):
                        j, d = _settle(n, cand[row], dist_[row], q_alone(i), t_alone)
                        nearest_of[n][i] = self._hit(train, t_idx[j], d)
                if h_codes is not None:
                    _, hd = nearest(h_codes[n], base[n], self.k)
                    scales.setdefault(c, {})[n] = float(np.median(hd))
                if self.all_classes:
                    cand, dist_ = ranked_candidates(q_codes[n], base[n], self.k)
                    for i in range(len(synthetic)):
                        prev = best_any[n][i]
                        if prev is not None and dist_[i][0] > prev["distance"] + _margin(q_alone(i)[n]):
                            continue  # cannot beat the best so far: no need to encode its candidates alone
                        j, d = _settle(n, cand[i], dist_[i], q_alone(i), t_alone)
                        if prev is None or d < prev["distance"]:
                            best_any[n][i] = {**self._hit(train, t_idx[j], d), "class": c}
            del base, h_codes, t_alone
            if progress is not None:
                progress("class", done, len(classes))
        return nearest_of, scales, best_any

    @staticmethod
    def _hit(train: ImageSet, index: int, distance: float) -> dict[str, Any]:
        return {
            "index": int(index),
            "id": train.ids[index],
            "path": train.paths[index] if train.paths else None,
            "distance": distance,
        }


# ----------------------------------------------------------------------------------------------
# the final re-rank on codes of images encoded alone

# An image's codes depend, in their last bits, on the batch it was encoded in: Linear and conv kernels
# are not batch-invariant on every CPU (AVX2 kernels differ from AVX-512 ones here). So the nearest
# candidates of each query (those within this share of the query's norm of the best) are compared once
# more on codes of each image encoded alone, one image per forward pass: an exact copy of a training
# image is then at distance 0 whatever the batch sizes and the CPU.
SETTLE_TOLERANCE = 1e-4


class _AloneCodes:
    """Codes of the images ``indices`` of one set, by position, each encoded alone (a batch of one) once."""

    def __init__(self, audit: MemorisationAudit, images: ImageSet, indices: Sequence[int]) -> None:
        self.audit, self.images, self.indices = audit, images, indices
        self.cache: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, position: int) -> dict[str, np.ndarray]:
        if position not in self.cache:
            codes = encode(self.audit.encoder, self.images.loader([self.indices[position]]), self.audit.spaces, 1)
            self.cache[position] = {name: value[0].astype(np.float64) for name, value in codes.items()}
        return self.cache[position]


def _margin(query_code: np.ndarray) -> float:
    """How far batch-layout rounding can move a distance of this query: SETTLE_TOLERANCE of its norm."""
    return SETTLE_TOLERANCE * float(np.linalg.norm(query_code))


def _settle(
    space: str,
    candidates: np.ndarray,
    distances: np.ndarray,
    query: dict[str, np.ndarray],
    codes_of: Callable[[int], dict[str, np.ndarray]],
) -> tuple[int, float]:
    """The nearest candidate and its distance, measured on codes of images encoded alone.

    ``candidates``/``distances`` are one query's ranked candidates (nearest first); those within
    ``SETTLE_TOLERANCE * |query|`` of the best are re-measured. Ties: the smaller index wins.
    """
    q = query[space]
    margin = _margin(q)
    near = [int(j) for j, d in zip(candidates, distances) if d <= distances[0] + margin]
    measured = [(float(np.linalg.norm(codes_of(j)[space] - q)), j) for j in near]
    d, j = min(measured)
    return j, d


# ----------------------------------------------------------------------------------------------
# outputs


def _merge_scans(scans: Sequence[tuple[dict, dict, dict]]) -> tuple[dict, dict, dict]:
    """Combine the ranks' scans of disjoint classes: same-class hits and scales are each found by one
    rank; the any-class nearest is the closest over all ranks."""
    nearest_of, scales, best_any = scans[0]
    for other_nearest, other_scales, other_any in scans[1:]:
        scales.update(other_scales)
        for name, hits in other_nearest.items():
            nearest_of[name] = [mine if mine is not None else theirs for mine, theirs in zip(nearest_of[name], hits)]
        for name, hits in other_any.items():
            best_any[name] = [theirs if _closer(theirs, mine) else mine for mine, theirs in zip(best_any[name], hits)]
    return nearest_of, scales, best_any


def _closer(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether hit ``a`` beats hit ``b``: nearer, or as near and of an earlier class (as one process scans)."""
    if a is None:
        return False
    return b is None or (a["distance"], a["class"]) < (b["distance"], b["class"])


def _uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def audit_montage(result: AuditResult, synthetic: ImageSet, train: ImageSet, tile: int = 96) -> np.ndarray:
    """The Figure-S22-style montage: per synthetic image a row of it and its nearest training images.

    Returns:
        An HxWx3 uint8 array.
    """
    from dgn.render import montage

    images, labels = [], []
    for i, it in enumerate(result.items):
        images.append(_uint8(synthetic.loader([i])[0]))
        labels.append(f"synth c{it['class']}")
        for s in result.spaces:
            hit = it["nearest"][s.name]
            images.append(_uint8(train.loader([hit["index"]])[0]))
            flag = "!" if s.name in it["flagged_spaces"] else ""
            labels.append(f"{flag}{s.name} {hit['distance']:.3g}")
    return montage(images, labels, columns=1 + len(result.spaces), tile=tile)


def write_audit(
    out_dir: str | Path,
    result: AuditResult,
    synthetic: ImageSet,
    train: ImageSet,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``audit.json`` (atomic) and ``montage.png`` to ``out_dir``.

    Returns:
        The JSON content written.
    """
    from dgn.files import atomic_write_json
    from dgn.render import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    content = result.to_json(class_names)
    content = _finite(content)
    atomic_write_json(out / "audit.json", content)
    save_png(out / "montage.png", audit_montage(result, synthetic, train))
    return content


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: replace them with None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
