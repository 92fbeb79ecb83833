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


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    x_label: str = "",
    size: tuple[int, int] = (480, 300),
) -> np.ndarray:
    """A small line chart of named (xs, ys) series with axes, their ranges and a legend, as HxWx3 uint8.

    Non-finite points are left out.
    """
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    width, height = size
    left, right, top, bottom = 56, 12, 22, 34
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    points = [(float(x), float(y)) for xs, ys in series.values() for x, y in zip(xs, ys)
              if np.isfinite(x) and np.isfinite(y)]
    if not points:
        return np.asarray(canvas)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    to_px = lambda x, y: (left + (x - x0) / (x1 - x0) * (width - left - right),
                          height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))
    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    draw.text((4, top - 4), f"{y1:.3g}", fill=(0, 0, 0))
    draw.text((4, height - bottom - 8), f"{y0:.3g}", fill=(0, 0, 0))
    draw.text((left, height - bottom + 4), f"{x0:.3g}", fill=(0, 0, 0))
    draw.text((width - right - 40, height - bottom + 4), f"{x1:.3g}", fill=(0, 0, 0))
    draw.text((left + (width - left) // 3, height - 14), x_label, fill=(0, 0, 0))
    draw.text((left, 4), title, fill=(0, 0, 0))
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        line = [to_px(float(x), float(y)) for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        elif line:
            draw.ellipse([line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2], fill=colour)
        draw.text((left + 6, top + 4 + 12 * i), name, fill=colour)
    return np.asarray(canvas)
