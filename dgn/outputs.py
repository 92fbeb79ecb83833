"""Run outputs: per-row images and codes, a montage, and ``manifest.json``, written as they finish.

Layout of a run directory::

    manifest.json            configuration + one entry per finished row
    images/<row>.png         the final image (last iterate, as act_max returns it)
    images/<row>_best.png    the best-activation iterate
    codes/<row>.safetensors  tensors "last" and "best" (re-render or resume from them)
    montage.png              all final images with their target and activation

Every file is written to a temporary name and renamed, and the manifest is rewritten after each
chunk, so an interrupted run leaves only complete files and ``resume`` skips the rows it lists.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import save as safetensors_save

from dgn import __version__
from dgn.errors import DGNError
from dgn.files import atomic_write_bytes, atomic_write_json
from dgn.render import montage, save_png, to_uint8
from dgn.synthesis import DGNAM, RowsResult

MANIFEST = "manifest.json"


class RunWriter:
    """Writes a synthesis run to ``out_dir`` chunk by chunk.

    Args:
        out_dir: the run directory.
        config: the full configuration (models, weights checksums, settings, targets, seeds).
        resume: continue a run in ``out_dir`` with the same configuration, skipping finished rows.
        display: "act_max" (the original's image mapping) or "mean".
    """

    def __init__(self, out_dir: str | Path, config: dict, resume: bool = False, display: str = "act_max") -> None:
        self.out = Path(out_dir)
        self.config = json.loads(json.dumps(config))  # plain JSON types, comparable with a loaded one
        self.display = display
        self.rows: list[dict] = []
        manifest_path = self.out / MANIFEST
        if manifest_path.exists():
            if not resume:
                raise DGNError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
            previous = json.loads(manifest_path.read_text())
            if previous.get("config") != self.config:
                changed = sorted(
                    k for k in set(previous.get("config", {})) | set(self.config)
                    if previous.get("config", {}).get(k) != self.config.get(k)
                )
                raise DGNError(f"cannot resume {self.out}: its configuration differs in {', '.join(changed)}")
            self.rows = previous.get("rows", [])
        self.started = time.time()

    def done_keys(self) -> set[str]:
        """Keys of the rows already finished (to pass as ``skip``)."""
        return {row["key"] for row in self.rows}

    def write(self, part: RowsResult, method: DGNAM | Any) -> None:
        """Write one finished chunk: images, codes, then the updated manifest.

        Args:
            part: the chunk's results.
            method: what produced them; anything with ``render(codes, boxes)`` and ``output_space``
                (``DGNAM``, or an image-space method whose "codes" are images).
        """
        space = method.output_space
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
            self.out / MANIFEST,
            {"dgn_version": __version__, "finished": finished, "config": self.config, "rows": self.rows},
        )

    def finish(self, order: list[str] | None = None) -> dict:
        """Write the montage of all final images and mark the manifest finished.

        Args:
            order: row keys in the order to show them (default: the order they were written).
        """
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


def read_manifest(out_dir: str | Path) -> dict:
    """Load a run's manifest."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        raise DGNError(f"no {MANIFEST} in {out_dir}; is it a dgn run directory?")
    return json.loads(path.read_text())
