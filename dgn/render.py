"""PNG writing (atomic), display mapping, and labelled montages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dgn.files import atomic_write_bytes
from dgn.spaces import PixelSpace, display_rgb01


def to_uint8(image: torch.Tensor, space: PixelSpace, style: str = "act_max") -> np.ndarray:
    """One image (C, H, W) in ``space`` -> HxWx3 uint8 RGB for viewing.

    ``style="act_max"`` is the original's mapping for Caffe spaces, ``"imsave"`` the same stretched per image
    as the original's saved PNGs (see ``spaces.display_rgb01``); other spaces always use the faithful
    mean-add decode.
    """
    if style in ("act_max", "imsave") and space.scale != 255.0:
        style = "mean"
    rgb = display_rgb01(image.detach().float().unsqueeze(0), space, style)[0]
    return (rgb.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Save an HxWx3 (or HxW) uint8 array as PNG, atomically."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def montage(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    columns: int | None = None,
    tile: int = 128,
    pad: int = 4,
) -> np.ndarray:
    """Lay out images in a grid of ``tile``-sized cells with a caption line under each.

    Returns:
        An HxWx3 uint8 array.
    """
    count = len(images)
    if count == 0:
        return np.full((tile, tile, 3), 255, np.uint8)
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    caption = 14 if labels else 0
    cell_h, cell_w = tile + caption + pad, tile + pad
    canvas = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, array in enumerate(images):
        r, c = divmod(i, columns)
        picture = Image.fromarray(array).convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS)
        x0, y0 = pad + c * cell_w, pad + r * cell_h
        canvas.paste(picture, (x0, y0))
        if labels:
            draw.text((x0 + 1, y0 + tile + 1), str(labels[i])[: max(4, tile // 6)], fill=(0, 0, 0))
    return np.asarray(canvas)


def write_gallery(
    path: str | Path,
    title: str,
    rows: Sequence[dict],
    settings: dict,
    montage_file: str | None = "montage.png",
    columns: Sequence[str] = ("target", "restart", "act_start", "act_end", "act_best"),
) -> None:
    """A self-contained ``index.html``: the montage, then one card per row (image and facts), then settings.

    Args:
        path: the HTML file to write (atomically); image paths in ``rows`` are relative to its folder.
        title: page heading.
        rows: manifest rows (each with ``image``), optionally with extra keys named in ``columns``.
        settings: shown as a JSON block at the end.
        montage_file: relative path of a montage to show first, or None.
        columns: row keys shown under each image.
    """
    from html import escape

    def fmt(value) -> str:
        return f"{value:.3g}" if isinstance(value, float) else escape(str(value))

    cards = []
    for row in rows:
        facts = "<br>".join(f"{escape(c)}: {fmt(row[c])}" for c in columns if c in row)
        cards.append(
            f'<figure><img src="{escape(row["image"])}" width="128" height="128" '
            f'style="image-rendering:pixelated"><figcaption>{facts}</figcaption></figure>'
        )
    montage_html = f'<p><img src="{escape(montage_file)}" style="max-width:100%"></p>' if montage_file else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:6px;font-size:12px;vertical-align:top}}
pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style></head>
<body><h1>{escape(title)}</h1>
{montage_html}
{"".join(cards)}
<h2>Settings</h2><pre>{escape(json.dumps(settings, indent=2))}</pre>
</body></html>
"""
    atomic_write_bytes(path, page.encode())
