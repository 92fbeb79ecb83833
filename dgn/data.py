"""Image loading: folders of images (optionally one subfolder per class), safe archive extraction,
and batches of RGB tensors in 0..1.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dgn.errors import DGNError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".ppm",
    ".tif",
    ".tiff",
)


def _is_image(path: Path, extensions: tuple[str, ...]) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in extensions


def _images_under(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """All images below ``folder`` (recursively, hidden entries skipped), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(p for p in (Path(dirpath) / f for f in filenames) if _is_image(p, extensions))
    return sorted(found)


class ImageFolderDataset(Dataset):
    """Images in class subfolders (``root/<class>/**/<image>``) or directly in ``root``.

    With subfolders, class names are the sorted subfolder names and labels their index; a flat folder
    gives label -1 for every image. Items are ``(image, label, path)`` where ``image`` is a PIL RGB
    image, or ``transform(image)`` when a transform is given.

    Attributes:
        classes: class names (empty for a flat folder).
        class_to_idx: class name -> label.
        samples: ``(path, label)`` per image, sorted by class then path.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.transform = transform
        if not self.root.is_dir():
            raise DGNError(f"image folder {self.root} does not exist or is not a directory")
        entries = sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
        loose = [p for p in entries if _is_image(p, self.extensions)]
        class_dirs = [p for p in entries if p.is_dir() and _images_under(p, self.extensions)]
        if loose and class_dirs:
            raise DGNError(
                f"{self.root} mixes loose images ({loose[0].name} ...) with class folders ({class_dirs[0].name} ...); "
                "use one layout: root/<class>/<image> or root/<image>"
            )
        self.classes: list[str] = [p.name for p in class_dirs]
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        if class_dirs:
            self.samples: list[tuple[Path, int]] = [
                (path, label)
                for label, d in enumerate(class_dirs)
                for path in _images_under(d, self.extensions)
            ]
        else:
            self.samples = [(p, -1) for p in loose]
        if not self.samples:
            raise DGNError(f"no images ({', '.join(self.extensions)}) found in {self.root}")

    @property
    def paths(self) -> list[Path]:
        """Image paths in dataset order."""
        return [p for p, _ in self.samples]

    @property
    def labels(self) -> list[int]:
        """Labels in dataset order (-1 for a flat folder)."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        path, label = self.samples[index]
        image = _open_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label, str(path)


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise DGNError(f"cannot read image {path}: {err}") from None


def _safe_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise DGNError(f"refusing to extract {archive}: member {name!r} would land outside {dest}")
    if not (member.isfile() or member.isdir()):
        if member.issym() or member.islnk():
            raise DGNError(f"refusing to extract {archive}: member {name!r} is a link ({member.linkname!r})")
        raise DGNError(f"refusing to extract {archive}: member {name!r} is not a regular file or directory")
    target = (dest / name).resolve()
    if target != dest and dest not in target.parents:
        raise DGNError(f"refusing to extract {archive}: member {name!r} would land outside {dest}")


def extract_archive(path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar archive (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) into ``dest`` and return ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components, links and
    special files are refused with a :class:`DGNError`.
    """
    archive = Path(path)
    dest_dir = Path(dest)
    if not archive.is_file():
        raise DGNError(f"archive {archive} does not exist")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            dest_dir.mkdir(parents=True, exist_ok=True)
            root = dest_dir.resolve()
            for member in members:
                _safe_member(member, root, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root, members=members, **kwargs)
    except (tarfile.TarError, EOFError) as err:
        raise DGNError(f"cannot extract {archive}: {err}") from None
    return dest_dir


def load_images(
    paths: Sequence[str | os.PathLike], size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Load images as one RGB float tensor (N, 3, H, W) in 0..1.

    Args:
        paths: image files.
        size: resize every image to ``(H, W)`` (an int means square) with bilinear filtering;
            ``None`` keeps the original size, which must then be the same for all images.
    """
    if not paths:
        raise DGNError("load_images needs at least one path")
    hw = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
    arrays = []
    for p in paths:
        image = _open_rgb(Path(p))
        if hw is not None and image.size != (hw[1], hw[0]):
            image = image.resize((hw[1], hw[0]), Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        sizes = sorted(f"{s[1]}x{s[0]}" for s in shapes)
        raise DGNError(
            f"images have different sizes ({', '.join(sizes[:4])}); pass size=(H, W) to resize them"
        )
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return batch.float().div_(255.0)
