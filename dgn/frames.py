"""Video frames from and to files: a GIF / video file or a folder of frame images in, an animated GIF out."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from dgn import spaces
from dgn.errors import DGNError
from dgn.files import atomic_write
from dgn.render import to_uint8

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def load_frames(source: str | Path, max_frames: int | None = None) -> torch.Tensor:
    """Frames of a video as RGB 0..1 (F, 3, H, W): an animated GIF, or a folder of frame images.

    A folder's images (png, jpg, ...) are taken in natural name order (frame_2 before frame_10); they must
    all have the same size. A folder holding no frames but GIFs names them.
    """
    path = Path(source)
    if not path.exists():
        raise DGNError(f"video {path} does not exist; give a folder of frames or a GIF")
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                        and p.suffix.lower() in FRAME_EXTENSIONS), key=_natural_key)
        if not files:
            gifs = sorted(p.name for p in path.glob("*.gif"))
            hint = f"; it holds GIFs, pass one of them: {', '.join(gifs)}" if gifs else ""
            raise DGNError(f"no frame images ({', '.join(FRAME_EXTENSIONS)}) in {path}{hint}")
        images = []
        for f in files[:max_frames]:
            try:
                with Image.open(f) as im:
                    images.append(im.convert("RGB"))
            except OSError as err:
                raise DGNError(f"cannot read frame {f}: {err}") from None
    else:
        try:
            with Image.open(path) as im:
                images = [frame.convert("RGB") for _, frame in zip(range(max_frames or 10**9), ImageSequence.Iterator(im))]
        except OSError as err:
            raise DGNError(f"cannot read video {path} ({err}); give a GIF or a folder of frames") from None
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise DGNError(f"frames of {path} differ in size: {sorted(sizes)}")
    array = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(255)


def frames_to_uint8(frames: torch.Tensor, space: spaces.PixelSpace) -> list[np.ndarray]:
    """Frames in ``space`` -> HxWx3 uint8 RGB, decoded faithfully (so saved frames reproduce what the net saw)."""
    return [to_uint8(f, space, style="mean") for f in frames]


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0, scale: int = 1) -> None:
    """An animated, looping GIF of uint8 RGB frames, written atomically.

    Note that GIF encoders merge identical consecutive frames (their durations add up).
    """
    if not frames:
        raise DGNError("no frames to write")
    pictures = [Image.fromarray(f) for f in frames]
    if scale > 1:
        pictures = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in pictures]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=round(1000 / fps),
                     loop=0, disposal=1)
    data = buffer.getvalue()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


# ----- the order probe ---------------------------------------------------------------------------------------
