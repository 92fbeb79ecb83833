"""Writing files so that a reader never sees half of one, and checksums of files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Create ``path`` by ``write(tmp)`` on a temporary file beside it, then rename it into place.

    Readers see the old file or the whole new one; on any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs and cached weights are ordinary readable files
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: str | os.PathLike, folder: bool = True) -> None:
    """Raise a one-line DGNError unless ``path`` (a folder, or a file with ``folder`` False) can be written.

    Nothing is created: the path itself, when it exists, must be a folder (or a file), and its nearest
    existing ancestor a folder this process may write in. Checked before a command starts its work, so a
    long synthesis never ends in an error about where to put the result.
    """
    from dgn.errors import DGNError

    target = Path(path)
    kind = "output folder" if folder else "output file"
    if target.exists():
        if folder and not target.is_dir():
            raise DGNError(f"{kind} {target} exists and is not a folder")
        if not folder and target.is_dir():
            raise DGNError(f"{kind} {target} is a folder; name a file")
        parent = target if folder else target.parent
    else:
        parent = target.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise DGNError(f"cannot make {kind} {target}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DGNError(f"cannot write {kind} {target}: no permission to write in {parent}")
