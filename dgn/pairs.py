"""Two-neuron art outputs (DGN-AM supplement S8): each pair row beside its two units run alone, as one grid.

A pair run holds, per restart, the single-unit rows (the anchor and each partner) and the pair rows
("A+B"). :func:`finish_pair_run` notes each pair row's single-unit activations in the manifest and draws
``pairs.png``: per restart, the single units in a row, then each pair under its partner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dgn.files import atomic_write_json
from dgn.render import montage, save_png


def pair_plan(anchor: str, partners: list[str]) -> tuple[list[str], list[str]]:
    """(single-unit targets: the anchor then the partners; pair targets ``anchor+partner``)."""
    return [anchor, *partners], [f"{anchor}+{b}" for b in partners]


def finish_pair_run(out: str | Path, manifest: dict, anchor: str, restarts: int) -> list[dict]:
    """Add ``single_a``/``single_b`` to the pair rows of a finished run's manifest (rewritten atomically) and
    write ``pairs.png``.

    Returns:
        The pair rows.
    """
    from PIL import Image

    out = Path(out)
    rows = manifest["rows"]
    single_end = {(r["target"], r["restart"]): r["act_end"] for r in rows if "partner" not in r}
    paired_rows = [r for r in rows if "partner" in r]
    for r in paired_rows:
        r["single_a"] = single_end.get((anchor, r["restart"]))
        r["single_b"] = single_end.get((r["partner"], r["restart"]))
    atomic_write_json(out / "manifest.json", {**manifest, "finished": True})

    def picture(row: dict) -> np.ndarray:
        return np.asarray(Image.open(out / row["image"]).convert("RGB"))

    grid, labels = [], []
    columns = 0
    for restart in range(restarts):
        alone = [r for r in rows if r["restart"] == restart and "partner" not in r]
        paired = [r for r in paired_rows if r["restart"] == restart]
        columns = len(alone)
        grid += [picture(r) for r in alone] + [np.full_like(picture(alone[0]), 255)] + [picture(r) for r in paired]
        labels += [f"{r['target']}: {r['act_end']:.3g}" for r in alone] + [f"pairs with {anchor}"]
        labels += [f"{r['act_a']:.3g} | {r['act_b']:.3g}" for r in paired]
    save_png(out / "pairs.png", montage(grid, labels, columns=columns))
    return paired_rows
