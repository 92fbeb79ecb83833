"""Top-k dataset examples: the real images that drive each unit most (and, on request, least).

One streaming pass over a folder of images scores every unit of the chosen layers at once. Memory is bounded
by the units and k, never by the number of images: each layer keeps, per unit, its k best candidates so far,
and every batch is merged into them (a vectorised heap: the batch's candidates are appended and the k best
kept). A unit of a spatial layer (a channel) scores an image by its highest activation over positions, and
the position is kept, so the receptive-field crop of the image that drove it can be shown (as the deep
visualization toolbox does). Activations are the layer's outputs as hooked (before a separate ReLU), the
objective ``dgn synthesize`` maximises by default.

The order is total: a higher score first, on equal scores the lower image index. So the pass can be cut into
fixed chunks of ``batch_size`` images, chunks shared among torchrun ranks (chunk c goes to rank c mod size),
each rank merged into one result that equals a single process's, and stopped and resumed from a checkpoint.

Beside the examples, each unit keeps its scores of an evenly spaced sample of the images (every ``stride``-th
image, so class-sorted folders are sampled across classes): the distribution of real activations that the atlas
draws as a histogram, in memory bounded by the sample size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dgn import spaces
from dgn.data import load_images
from dgn.errors import DGNError
from dgn.files import atomic_write_bytes
from dgn.layers import aliases_for, forward_to, resolve_layer
from dgn.models import Classifier, model_record

EMPTY_ID = torch.iinfo(torch.int64).max  # an unfilled slot: sorts after every real image


@dataclass
class LayerExamples:
    """One layer's examples: per unit the ``k`` highest-scoring images (and the ``bottom`` lowest).

    Attributes:
        layer: the layer's module name.
        spatial: whether the layer has positions (a conv layer: units are channels).
        scores, ids, positions: (units, k), (units, k), (units, k, 2): the scores in falling order, the image
            indices (``EMPTY_ID`` where fewer than k images were seen) and the (y, x) of each score in the
            layer's grid (-1 for a layer without positions).
        bottom_scores, bottom_ids, bottom_positions: the same for the lowest scores, rising.
        sample: (units, S): the scores of images 0, stride, 2 * stride, ... (NaN where not seen yet).
    """

    layer: str
    spatial: bool
    scores: torch.Tensor
    ids: torch.Tensor
    positions: torch.Tensor
    bottom_scores: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    bottom_ids: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))
    bottom_positions: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))
    sample: torch.Tensor = field(default_factory=lambda: torch.empty(0, 0))

    @property
    def units(self) -> int:
        return self.scores.shape[0]

    @classmethod
    def empty(cls, layer: str, spatial: bool, units: int, k: int, bottom: int, sample: int = 0) -> LayerExamples:
        def slots(n: int, fill: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (torch.full((units, n), fill), torch.full((units, n), EMPTY_ID, dtype=torch.int64),
                    torch.full((units, n, 2), -1, dtype=torch.int64))

        return cls(layer, spatial, *slots(k, -torch.inf), *slots(bottom, torch.inf),
                   torch.full((units, sample), torch.nan))

    def merge(self, scores: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor,
              bottom: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Merge candidates (units, M), (units, M), (units, M, 2) into the kept examples; ``bottom``: other
        candidates for the lowest ones (default the same)."""
        self.scores, self.ids, self.positions = _keep(
            torch.cat([self.scores, scores], 1), torch.cat([self.ids, ids], 1),
            torch.cat([self.positions, positions], 1), self.scores.shape[1], largest=True)
        if self.bottom_scores.shape[1]:
            low_scores, low_ids, low_positions = bottom if bottom is not None else (scores, ids, positions)
            self.bottom_scores, self.bottom_ids, self.bottom_positions = _keep(
                torch.cat([self.bottom_scores, low_scores], 1), torch.cat([self.bottom_ids, low_ids], 1),
                torch.cat([self.bottom_positions, low_positions], 1), self.bottom_scores.shape[1], largest=False)

    def absorb(self, other: LayerExamples) -> None:
        """Merge another part's examples of the same layer (e.g. another rank's)."""
        self.merge(other.scores, other.ids, other.positions,
                   (other.bottom_scores, other.bottom_ids, other.bottom_positions))
        if self.sample.numel():
            self.sample = torch.where(self.sample.isnan(), other.sample, self.sample)

    def record_sample(self, scores: torch.Tensor, ids: torch.Tensor, stride: int) -> None:
        """Keep the scores (units, B) of the images ``ids`` (B,) that belong to the sample."""
        if not self.sample.numel():
            return
        chosen = (ids % stride == 0) & (ids // stride < self.sample.shape[1])
        self.sample[:, ids[chosen] // stride] = scores[:, chosen]

    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("scores", "ids", "positions", "bottom_scores", "bottom_ids", "bottom_positions", "sample")
        return {f"{self.layer}.{n}": getattr(self, n).contiguous() for n in names}


def _keep(scores: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor, k: int,
          largest: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k best candidates per unit by (score, then lower image index): a total order, so the result does
    not depend on how the candidates were split or in which order they came."""
    by_id = ids.argsort(stable=True, dim=1)
    scores, ids = scores.gather(1, by_id), ids.gather(1, by_id)
    positions = positions.gather(1, by_id[..., None].expand_as(positions))
    key = torch.nan_to_num(scores, nan=-torch.inf if largest else torch.inf)
    order = key.argsort(stable=True, dim=1, descending=largest)[:, :k]
    return scores.gather(1, order), ids.gather(1, order), positions.gather(1, order[..., None].expand(-1, -1, 2))


def _fitted(paths: Sequence[str | Path], size: tuple[int, int], fit_mode: str) -> torch.Tensor:
    """Images as RGB 0..1 (B, 3, H, W), each fitted to ``size``."""
    return torch.cat([spaces.fit(load_images([p]), size, fit_mode) for p in paths])


def unit_scores(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and unit, the score and its (y, x): acts (B, C, H, W) -> (C, B), (C, B, 2) (the highest
    activation over positions); acts (B, U) -> (U, B) and -1 positions."""
    acts = acts.float()
    if acts.dim() == 4:
        w = acts.shape[3]
        values, index = acts.flatten(2).max(2)
        positions = torch.stack([index // w, index % w], -1)
        return values.T.contiguous(), positions.transpose(0, 1).contiguous()
    flat = acts.flatten(1)
    return flat.T.contiguous(), torch.full((flat.shape[1], flat.shape[0], 2), -1, dtype=torch.int64)


@dataclass
class TopExamples:
    """A written pass (see :func:`write_examples`): the examples of every chosen layer, over ``images``
    (paths, in index order), with the index of ``examples.json``."""

    layers: dict[str, LayerExamples]
    images: list[str]
    index: dict
    folder: Path

    @classmethod
    def read(cls, folder: str | Path) -> TopExamples:
        """Read the output folder of ``dgn topk``."""
        folder = Path(folder)
        if not (folder / "examples.json").is_file() or not (folder / "examples.safetensors").is_file():
            raise DGNError(f"{folder} holds no examples (examples.json and examples.safetensors from dgn topk)")
        index = json.loads((folder / "examples.json").read_text())
        layers, _ = read_examples(folder / "examples.safetensors")
        root = Path(index["root"])
        return cls(layers, [str(root / p) for p in index["images"]], index, folder)

    def layer(self, name: str) -> LayerExamples:
        """A layer's examples by module name or alias."""
        if name in self.layers:
            return self.layers[name]
        for canonical, entry in self.index["layers"].items():
            if entry.get("alias") == name:
                return self.layers[canonical]
        raise DGNError(f"no examples of layer {name!r}; these were computed: {', '.join(self.layers)}")

    def unit(self, layer: str, unit: int, bottom: bool = False) -> list[dict]:
        """One unit's examples: ``[{"id", "image", "score", "position"}, ...]``, best first (or lowest first)."""
        ex = self.layer(layer)
        entries = self.index["layers"][ex.layer]["units"][unit].get("bottom" if bottom else "top", [])
        return [{**item, "image": self.images[item["id"]], "crop": entry.get("crop")}
                for item, entry in zip(_unit_items(ex, unit, bottom), entries)]


def chunks_of(count: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[range]:
    """This rank's chunks of image indices: chunk c (``batch_size`` images) belongs to rank c mod size."""
    if batch_size < 1:
        raise DGNError(f"batch size must be >= 1, got {batch_size}")
    return [range(start, min(start + batch_size, count))
            for c, start in enumerate(range(0, count, batch_size)) if c % world_size == rank]


class ExampleFinder:
    """Finds the top-k (and bottom-k) images of every unit of ``layers`` of ``classifier``.

    Args:
        classifier: the network.
        layers: layer names or aliases (e.g. ``["conv5", "fc6", "fc8"]``).
        k, bottom: how many highest and lowest images to keep per unit.
        sample: how many images (evenly spaced) keep their score of every unit, for histograms (0: none).
        fit_mode: how images are brought to the classifier's input (see ``dgn.spaces.fit``).
        device: where the network runs.
    """

    def __init__(self, classifier: Classifier, layers: Sequence[str], k: int = 9, bottom: int = 0,
                 fit_mode: str = "auto", device: str | torch.device = "cpu", sample: int = 0) -> None:
        if k < 1 or bottom < 0 or sample < 0:
            raise DGNError(f"k must be >= 1, bottom and sample >= 0, got k={k}, bottom={bottom}, sample={sample}")
        if not layers:
            raise DGNError("name at least one layer")
        self.classifier, self.k, self.bottom, self.fit_mode = classifier, k, bottom, fit_mode
        self.sample, self.stride, self.sample_slots = sample, 1, 0  # set by each pass from its number of images
        self.device = torch.device(device)
        self.layers = list(dict.fromkeys(resolve_layer(classifier.module, name) for name in layers))
        classifier.module.to(self.device).eval()

    def load(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Images as the classifier sees them: RGB 0..1 (B, 3, H, W), fitted to its input size."""
        return _fitted(paths, self.classifier.space.size, self.fit_mode)

    @torch.no_grad()
    def empty(self, first: torch.Tensor) -> dict[str, LayerExamples]:
        """Empty examples shaped by the activations of images ``first`` (RGB 0..1 at the input size)."""
        return self._empty_like(forward_to(self.classifier.module, self._to_input(first[:1]), self.layers))

    def _empty_like(self, acts: dict[str, torch.Tensor]) -> dict[str, LayerExamples]:
        return {name: LayerExamples.empty(name, a.dim() == 4, a.shape[1] if a.dim() == 4 else a.flatten(1).shape[1],
                                          self.k, self.bottom, self.sample_slots)
                for name, a in acts.items()}

    def plan_sample(self, count: int) -> None:
        """Space the sample over a pass of ``count`` images: every ``stride``-th image, ``sample`` at most."""
        self.stride = max(1, -(-count // self.sample)) if self.sample else 1
        self.sample_slots = min(self.sample, -(-count // self.stride))

    def _to_input(self, rgb01: torch.Tensor) -> torch.Tensor:
        return spaces.from_rgb01(rgb01.to(self.device), self.classifier.space)

    @torch.no_grad()
    def update(self, examples: dict[str, LayerExamples], rgb01: torch.Tensor, ids: torch.Tensor) -> None:
        """Merge one batch of images (RGB 0..1 at the input size) with image indices ``ids`` (B,); an empty
        ``examples`` is filled with the layers' empty examples first."""
        acts = forward_to(self.classifier.module, self._to_input(rgb01), self.layers)
        if not examples:
            examples.update(self._empty_like(acts))
        for name, ex in examples.items():
            scores, positions = unit_scores(acts[name].cpu())
            ex.merge(scores, ids.expand(scores.shape[0], -1), positions)
            ex.record_sample(scores, ids, self.stride)

    def fingerprint(self, images: Sequence[str], batch_size: int, world_size: int) -> str:
        """What a checkpoint must match to be resumed: the network, layers, k, images and chunking."""
        record = {"classifier": model_record(self.classifier), "layers": self.layers, "k": self.k,
                  "bottom": self.bottom, "sample": self.sample, "fit": self.fit_mode, "batch": batch_size,
                  "world": world_size,
                  "images": hashlib.sha256("\n".join(images).encode()).hexdigest()}
        return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()

    def run(self, paths: Sequence[str | Path], batch_size: int = 64, rank: int = 0, world_size: int = 1,
            checkpoint: str | Path | None = None, checkpoint_every: int = 50,
            progress: Callable[[int], None] | None = None, workers: int = 0) -> dict[str, LayerExamples]:
        """This rank's pass over its chunks of ``paths`` (all of them in a single process).

        Args:
            paths: the images, in index order.
            batch_size: images per chunk (the unit of sharding and of checkpoints).
            checkpoint: a file to save the examples to every ``checkpoint_every`` chunks and to resume from
                (it must come from the same network, layers, k, images and chunking).
            progress: called with the number of images each chunk advanced.
            workers: processes decoding the next chunks while the network scores this one (0: decode here).
        """
        names = [str(p) for p in paths]
        if not names:
            raise DGNError("no images to find examples in")
        mine = chunks_of(len(names), batch_size, rank, world_size)
        self.plan_sample(len(names))
        fingerprint = self.fingerprint(names, batch_size, world_size)
        examples: dict[str, LayerExamples] = {}
        done = 0
        if checkpoint is not None and Path(checkpoint).exists():
            examples, done = self._load_checkpoint(Path(checkpoint), fingerprint)
            if progress is not None:
                progress(sum(len(c) for c in mine[:done]))
        for n, (chunk, images) in enumerate(zip(mine[done:], self._decoded(names, mine[done:], workers)), start=done):
            self.update(examples, images, torch.tensor(list(chunk), dtype=torch.int64))
            if progress is not None:
                progress(len(chunk))
            if checkpoint is not None and (n + 1) % checkpoint_every == 0 and n + 1 < len(mine):
                self._save_checkpoint(Path(checkpoint), examples, n + 1, fingerprint)
        if not examples:  # this rank had no chunk
            examples = self.empty(self.load([names[0]]))
        return examples

    def _decoded(self, names: list[str], chunks: list[range], workers: int):
        """The chunks' images in order, decoded here or by ``workers`` DataLoader processes ahead of use."""
        if workers <= 0:
            return (self.load([names[i] for i in chunk]) for chunk in chunks)
        from torch.utils.data import DataLoader

        return iter(DataLoader(_ChunkImages(self, names, chunks), batch_size=None, num_workers=workers))

    def _save_checkpoint(self, path: Path, examples: dict[str, LayerExamples], done: int, fingerprint: str) -> None:
        save_examples(path, examples, {"chunks_done": str(done), "fingerprint": fingerprint})

    def _load_checkpoint(self, path: Path, fingerprint: str) -> tuple[dict[str, LayerExamples], int]:
        examples, meta = read_examples(path)
        if meta.get("fingerprint") != fingerprint:
            raise DGNError(f"{path} was written by a pass with another network, layers, k, image list or batch size; "
                           "delete it or rerun with the same options")
        return examples, int(meta["chunks_done"])


class _ChunkImages(torch.utils.data.Dataset):
    """Item c: chunk c's images as the finder loads them (for DataLoader workers)."""

    def __init__(self, finder: ExampleFinder, names: list[str], chunks: list[range]) -> None:
        self.size, self.fit_mode, self.names, self.chunks = finder.classifier.space.size, finder.fit_mode, names, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, c: int) -> torch.Tensor:
        return _fitted([self.names[i] for i in self.chunks[c]], self.size, self.fit_mode)


def read_examples(path: str | Path) -> tuple[dict[str, LayerExamples], dict[str, str]]:
    """Examples saved by :func:`save_examples` or a checkpoint, and the file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    spatial = json.loads(meta.get("spatial", "{}"))
    examples = {}
    for name, is_spatial in spatial.items():
        parts = {n: tensors[f"{name}.{n}"] for n in ("scores", "ids", "positions", "bottom_scores", "bottom_ids",
                                                    "bottom_positions", "sample") if f"{name}.{n}" in tensors}
        examples[name] = LayerExamples(name, bool(is_spatial), **parts)
    return examples, meta


def save_examples(path: str | Path, examples: dict[str, LayerExamples], meta: dict[str, str] | None = None) -> None:
    """Write examples as safetensors (atomically)."""
    from safetensors.torch import save

    tensors = {k: v for ex in examples.values() for k, v in ex.tensors().items()}
    info = {**(meta or {}), "spatial": json.dumps({name: ex.spatial for name, ex in examples.items()})}
    atomic_write_bytes(path, save(tensors, metadata=info))


def merge_parts(parts: Sequence[dict[str, LayerExamples]]) -> dict[str, LayerExamples]:
    """One result from several ranks' examples (equal to one process's pass over all the images)."""
    merged = parts[0]
    for part in parts[1:]:
        for name, ex in merged.items():
            ex.absorb(part[name])
    return merged


def write_examples(out_dir: str | Path, examples: dict[str, LayerExamples], finder: ExampleFinder,
                   paths: Sequence[str | Path], root: str | Path, labels: Sequence[str] | None = None,
                   crops: bool = True, config: dict | None = None) -> dict:
    """Write a pass's results to ``out_dir`` and return the index.

    Files: ``examples.safetensors`` (every layer's scores, image indices and positions), ``examples.json``
    (the index: config, images relative to ``root`` with their class names, the activation sample's stride
    and size, and per layer and unit its examples with score, position and crop file; the config records the
    network, layers, k, bottom, sample, image root, count and fit, plus ``config``'s other keys) and, for spatial layers with ``crops``,
    ``crops/<layer>/<unit>_<i>.png`` (top) and ``<unit>_b<i>.png`` (bottom): the receptive field of the
    position that scored, in the image as the network saw it.
    """
    from dgn.models import input_shape
    from dgn.receptive import ReceptiveFields
    from dgn.render import save_png

    out = Path(out_dir)
    root = Path(root)
    rel = [str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p) for p in paths]
    shape = input_shape(finder.classifier)
    fields = ReceptiveFields(finder.classifier.module, shape)
    if crops:
        spatial = [name for name, ex in examples.items() if ex.spatial]
        with torch.no_grad():
            grids = forward_to(finder.classifier.module, torch.zeros(1, *shape, device=finder.device), spatial)
        for name in spatial:
            fields.fill(name, tuple(grids[name].shape[-2:]))
    cache: dict[int, torch.Tensor] = {}

    def crop(layer: str, image_id: int, position: list[int], name: str) -> str:
        if image_id not in cache:
            cache[image_id] = finder.load([paths[image_id]])[0]
        top, left, h, w = fields.get(layer, tuple(position))
        patch = cache[image_id][:, top : top + h, left : left + w]
        save_png(out / name, (patch.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
        return name

    config = {"classifier": finder.classifier.name, "layers": finder.layers, "k": finder.k, "bottom": finder.bottom,
              "sample": finder.sample, "images": str(root), "count": len(paths), "fit": finder.fit_mode,
              **(config or {})}
    index: dict = {"config": config, "root": str(root), "images": rel,
                   "labels": list(labels) if labels is not None else None,
                   "sample": {"stride": finder.stride, "size": finder.sample_slots}, "layers": {}}
    aliases = {v: k for k, v in aliases_for(finder.classifier.module).items()}
    for name, ex in examples.items():
        units = []
        for u in range(ex.units):
            entry = {}
            for kind, bottom in (("top", False), ("bottom", True)):
                items = []
                for i, item in enumerate(_unit_items(ex, u, bottom)):
                    if crops and ex.spatial:
                        suffix = f"b{i}" if bottom else str(i)
                        item["crop"] = crop(name, item["id"], item["position"], f"crops/{name}/{u:04d}_{suffix}.png")
                    items.append(item)
                if items or not bottom:
                    entry[kind] = items
            units.append(entry)
        index["layers"][name] = {"alias": aliases.get(name), "spatial": ex.spatial, "units": units}
    save_examples(out / "examples.safetensors", examples, {"config": json.dumps(config, default=str)})
    atomic_write_bytes(out / "examples.json", json.dumps(index, default=str).encode())
    return index


def _unit_items(ex: LayerExamples, unit: int, bottom: bool) -> list[dict]:
    scores, ids, pos = ((ex.bottom_scores, ex.bottom_ids, ex.bottom_positions) if bottom
                        else (ex.scores, ex.ids, ex.positions))
    if not scores.numel():
        return []
    return [{"id": i, "score": round(s, 5), "position": p if ex.spatial else None}
            for s, i, p in zip(scores[unit].tolist(), ids[unit].tolist(), pos[unit].tolist()) if i != EMPTY_ID]


def check_examples_cover(examples: TopExamples, classifier_name: str, layers: Sequence[str]) -> None:
    """Refuse examples of another classifier, or that lack one of ``layers``, before a run starts."""
    name = examples.index.get("config", {}).get("classifier")
    if name is not None and name != classifier_name:
        raise DGNError(f"the examples were computed for classifier {name!r}, this run uses {classifier_name!r}")
    for layer in dict.fromkeys(layers):
        examples.layer(layer)


def examples_figure(run_dir: str | Path, rows: Sequence[dict], examples: TopExamples, real: int = 4,
                    tile: int = 96) -> np.ndarray:
    """The DGN-AM supplement's Fig. S8 for a run: per target one line, its ``real`` top dataset images (the
    receptive-field crop for a conv unit) with their scores, then the run's images of it with their final
    activations. ``rows`` are the run manifest's rows; targets that are not single units are left out."""
    from dgn.render import montage

    run_dir = Path(run_dir)
    by_target: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("kind") is None and row.get("unit") is not None and "+" not in row["target"]:
            by_target.setdefault(row["target"], []).append(row)
    if not by_target:
        raise DGNError("the run has no single-unit targets to show dataset examples for")
    columns = real + max(len(group) for group in by_target.values())
    tiles, labels = [], []
    blank = np.full((tile, tile, 3), 255, np.uint8)
    for group in by_target.values():
        items = examples.unit(group[0]["layer"], group[0]["unit"])[:real]
        for item in items:
            picture = examples.folder / item["crop"] if item.get("crop") else Path(item["image"])
            tiles.append(np.asarray(Image.open(picture).convert("RGB")))
            labels.append(f"real {item['score']:.3g}")
        for row in group:
            tiles.append(np.asarray(Image.open(run_dir / row["image"]).convert("RGB")))
            labels.append(f"{row['target']} {row['act_end']:.3g}")
        padding = columns - len(items) - len(group)
        tiles += [blank] * padding
        labels += [""] * padding
    return montage(tiles, labels, columns=columns, tile=tile)


def multifaceted_starts(param, examples: TopExamples, rows: Sequence, top: int = 50, seed: int = 0,
                        random_weights: bool = False, weights_dir: str | None = None) -> tuple[torch.Tensor, dict]:
    """Start codes for multifaceted restarts (Nguyen, Yosinski & Clune 2016), one per row of the plan.

    For each target, the prior's encoder codes its ``top`` highest-scoring dataset images, k-means groups
    them into as many clusters as the target has restarts (:func:`dgn.starts.facet_codes`), and restart r
    starts from the r-th centre (largest cluster first).

    Returns:
        (codes (len(rows), *code_shape), what a manifest records of them).
    """
    from dgn.starts import encode_codes, encoder_of, facet_codes, read_start_images, start_size

    encoder = encoder_of(param.generator, random_weights, seed, weights_dir)
    size = start_size(param, "encode", encoder)
    restarts: dict[str, int] = {}
    for row in rows:
        restarts[row.label] = restarts.get(row.label, 0) + 1
    centres: dict[str, torch.Tensor] = {}
    record: dict = {"mode": "multifaceted", "encoder": param.generator.encoder, "top": top, "clusters": {}}
    for row in rows:
        if row.label in centres:
            continue
        if not row.target.is_neuron or row.partner is not None:
            raise DGNError(f"multifaceted starts need single-unit targets, got {row.label}")
        items = examples.unit(row.target.layer, row.target.unit)[:top]
        if len(items) < restarts[row.label]:
            raise DGNError(f"{row.label} has {len(items)} dataset examples, fewer than its {restarts[row.label]} "
                           "restarts; run dgn topk with a larger --k")
        codes = encode_codes(encoder[0], encoder[1], read_start_images([it["image"] for it in items], size),
                             param.generator.code_shape)
        centres[row.label] = facet_codes(codes, restarts[row.label], seed)
        record["clusters"][row.label] = len(items)
    start = torch.stack([centres[row.label][row.restart] for row in rows])
    return start.to(param.device), record
