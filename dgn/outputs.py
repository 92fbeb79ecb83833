"""Run outputs: per-row images and codes, a montage, and ``manifest.json``, written as they finish.

Layout of a run directory::

    manifest.json            configuration + one entry per finished row
    images/<row>.png         the final image (last iterate, as act_max returns it)
    images/<row>_best.png    the best-activation iterate
    codes/<row>.safetensors  tensors "last" and "best" (re-render or resume from them)
    montage.png              all final images with their target and activation
    parts/rank-NNNN.json     while a sharded (torchrun) run is going: each rank's rows, merged at the end

Every file is written to a temporary name and renamed, and the manifest is rewritten after each
chunk, so an interrupted run leaves only complete files and ``resume`` skips the rows it lists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import save as safetensors_save

from dgn import __version__
from dgn.distributed import World, barrier, shard_skip
from dgn.errors import DGNError
from dgn.files import atomic_write_bytes, atomic_write_json
from dgn.render import montage, save_png, to_uint8
from dgn.rows import RowsResult

MANIFEST = "manifest.json"
PARTS = "parts"  # per-rank manifests of a sharded run, merged into MANIFEST by rank 0


class RunWriter:
    """Writes a synthesis run to ``out_dir`` chunk by chunk.

    Args:
        out_dir: the run directory.
        config: the full configuration (models, weights checksums, settings, targets, seeds).
        resume: continue a run in ``out_dir`` with the same configuration, skipping finished rows.
        display: "act_max" (the original's image mapping) or "mean".
    """

    def __init__(self, out_dir: str | Path, config: dict, resume: bool = False, display: str = "act_max",
                 part: str | None = None) -> None:
        self.out = Path(out_dir)
        self.config = json.loads(json.dumps(config))  # plain JSON types, comparable with a loaded one
        self.display = display
        self.part = part
        self.rows: list[dict] = []  # the rows this writer owns (all of them unless it writes a part)
        self._others: list[dict] = []  # rows finished earlier by other parts (resumed sharded runs)
        previous = self._previous_files()
        if previous and not resume:
            raise DGNError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        for path in previous:
            saved = json.loads(path.read_text())
            if saved.get("config") != self.config:
                changed = sorted(
                    k for k in set(saved.get("config", {})) | set(self.config)
                    if saved.get("config", {}).get(k) != self.config.get(k)
                )
                raise DGNError(f"cannot resume {self.out}: its configuration differs in {', '.join(changed)}")
            mine = path == self._own_path() or (part is None and path.name == MANIFEST)
            (self.rows if mine else self._others).extend(saved.get("rows", []))
        if part is None:  # a single process adopts the rows of an interrupted sharded run
            self.rows.extend(self._others)
            self._others = []
        self.started = time.time()

    def _own_path(self) -> Path:
        return self.out / (MANIFEST if self.part is None else f"{PARTS}/{self.part}.json")

    def _previous_files(self) -> list[Path]:
        """The merged manifest, if any, and every rank's part manifest of an unfinished sharded run."""
        files = [self.out / MANIFEST] if (self.out / MANIFEST).exists() else []
        return files + sorted((self.out / PARTS).glob("*.json"))

    def done_keys(self) -> set[str]:
        """Keys of the rows already finished by any part (to pass as ``skip``)."""
        return {row["key"] for row in self.rows + self._others}

    def write(self, part: RowsResult, method: Any) -> None:
        """Write one finished chunk: images, codes, then the updated manifest.

        Args:
            part: the chunk's results.
            method: what produced them; anything with ``render(codes, boxes)`` and ``output_space``
                (``DGNAM``, or an image-space method whose "codes" are images).
        """
        space = method.output_space
        rerun = {row.key for row in part.rows}  # rows run again (a coupled group's finished rows) replace their entry
        self.rows = [row for row in self.rows if row["key"] not in rerun]
        last = method.render(part.codes_last, part.view_boxes)
        best = method.render(part.codes_best, part.view_boxes)
        for i, row in enumerate(part.rows):
            image = f"images/{row.slug}.png"
            image_best = f"images/{row.slug}_best.png"
            code = f"codes/{row.slug}.safetensors"
            save_png(self.out / image, to_uint8(last[i], space, self.display))
            save_png(self.out / image_best, to_uint8(best[i], space, self.display))
            tensors = {"last": part.codes_last[i].contiguous(), "best": part.codes_best[i].contiguous()}
            atomic_write_bytes(self.out / code, safetensors_save(tensors, metadata={"key": row.key}))
            self.rows.append(
                {
                    "key": row.key,
                    "target": row.label,
                    "layer": row.target.layer,
                    "unit": row.target.unit,
                    "position": list(row.target.position) if row.target.position else None,
                    **({} if row.target.is_neuron else {"kind": "channel" if row.target.kind == "unit"
                                                        else row.target.kind, "mean": row.target.mean}),
                    "restart": row.restart,
                    "seed": row.seed,
                    "image": image,
                    "image_best": image_best,
                    "code": code,
                    "view_box": list(part.view_boxes[i]),
                    "act_start": float(part.act_start[i]),
                    "act_end": float(part.act_end[i]),
                    "act_best": float(part.act_best[i]),
                    "best_step": int(part.best_step[i]),
                    **part.row_extra(i),
                }
            )
        self._write_manifest(finished=False)

    def _write_manifest(self, finished: bool) -> None:
        atomic_write_json(
            self._own_path(),
            {"dgn_version": __version__, "finished": finished, "display": self.display, "config": self.config,
             "rows": self.rows},
        )

    def finish(self, order: list[str] | None = None, world: World | None = None) -> dict | None:
        """Write the montage of all final images and mark the manifest finished.

        In a sharded run every rank calls this; rank 0 waits for the others, merges their part
        manifests (and any rows of an earlier, interrupted run) into ``manifest.json``, and removes
        the parts. Other ranks return None.

        Args:
            order: row keys in the order to show them (default: the order they were written).
            world: this process's place in a sharded run (None: a single process).
        """
        if self.part is not None:
            barrier(world or World())
            if world is not None and not world.is_main:
                return None
            merged = {}
            for path in self._previous_files():
                merged.update({row["key"]: row for row in json.loads(path.read_text()).get("rows", [])})
            self.part, self.rows, self._others = None, list(merged.values()), []
        finished = self._finish_merged(order)
        for path in sorted((self.out / PARTS).glob("*.json")):  # merged now (or adopted by a resumed run)
            path.unlink()
        if (self.out / PARTS).is_dir():
            (self.out / PARTS).rmdir()
        return finished

    def _finish_merged(self, order: list[str] | None) -> dict:
        rows = self.rows
        if order is not None:
            position = {key: i for i, key in enumerate(order)}
            rows = sorted(rows, key=lambda r: position.get(r["key"], len(position)))
            self.rows = rows
        from PIL import Image

        images = [np.asarray(Image.open(self.out / r["image"]).convert("RGB")) for r in rows]
        labels = [f"{r['target']} r{r['restart']}: {r['act_end']:.3g}" for r in rows]
        save_png(self.out / "montage.png", montage(images, labels))
        self._write_manifest(finished=True)
        return {"dgn_version": __version__, "config": self.config, "rows": rows}


def run_and_write(
    synthesize: Callable[..., object],
    rows: Sequence,
    method: Any,
    out_dir: str | Path,
    config: dict,
    steps_per_row: int,
    batch_size: int,
    resume: bool = False,
    display: str = "act_max",
    world: World | None = None,
    progress: Callable[[int], AbstractContextManager[Callable[[int], None] | None]] | None = None,
    on_chunk: Callable[[RowsResult], None] | None = None,
) -> tuple[dict | None, int]:
    """Optimise the planned ``rows`` and write the run directory, sharded across ranks when launched by torchrun.

    Args:
        synthesize: ``synthesize(batch_size=..., skip=..., on_chunk=..., progress=...)`` of the method, with
            its targets, restarts and seed already bound.
        rows: the planned rows (``method.plan(...)``), in the order to show them.
        method: what renders the results (``render`` and ``output_space``).
        out_dir, config, resume, display: see :class:`RunWriter`.
        steps_per_row: optimisation steps per row (the total handed to ``progress``).
        batch_size: rows per chunk.
        world: this process's place in a sharded run (default: from the environment).
        progress: ``progress(total_steps)`` gives a context manager yielding a callback that is called with
            the steps advanced (e.g. a progress bar's ``update``); the library itself never prints.
        on_chunk: also called with each finished chunk.

    Returns:
        (the merged manifest on rank 0 or a single process, None on other ranks; the rows this process
        optimised).
    """
    world = world or World.from_env()
    writer = RunWriter(out_dir, config, resume=resume, display=display, part=world.part_name)
    done = writer.done_keys()
    barrier(world)  # every rank has read the same finished rows before any rank writes new ones
    skip = shard_skip([r.key for r in rows], done, batch_size, world)
    todo = len(rows) - len(skip)

    def write_chunk(part: RowsResult) -> None:
        writer.write(part, method)
        if on_chunk is not None:
            on_chunk(part)

    with (progress(todo * steps_per_row) if progress is not None else nullcontext()) as update:
        synthesize(batch_size=batch_size, skip=skip, on_chunk=write_chunk, progress=update)
    return writer.finish(order=[r.key for r in rows], world=world), todo


def read_manifest(out_dir: str | Path) -> dict:
    """Load a run's manifest."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        raise DGNError(f"no {MANIFEST} in {out_dir}; is it a dgn run directory?")
    return json.loads(path.read_text())
