"""Image folders, safe archive extraction, and image batches."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from dgn.data import ImageFolderDataset, extract_archive, load_images
from dgn.errors import DGNError


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def _solid(h, w, rgb):
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3))


def test_class_folders_sorted_to_labels(tmp_path):
    _png(tmp_path / "zebra" / "1.png", _solid(4, 4, (0, 0, 255)))
    _png(tmp_path / "apple" / "b.png", _solid(4, 4, (255, 0, 0)))
    _png(tmp_path / "apple" / "nested" / "a.PNG", _solid(4, 4, (0, 255, 0)))
    _png(tmp_path / "apple" / ".hidden.png", _solid(4, 4, (1, 1, 1)))
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "empty_class").mkdir()
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["apple", "zebra"]
    assert ds.class_to_idx == {"apple": 0, "zebra": 1}
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == [
        "apple/b.png",
        "apple/nested/a.PNG",
        "zebra/1.png",
    ]
    assert ds.labels == [0, 0, 1]
    image, label, path = ds[2]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 0, 255)
    assert label == 1 and path == str(tmp_path / "zebra" / "1.png")


def test_flat_folder_has_label_minus_one_and_transform(tmp_path):
    _png(tmp_path / "b.png", np.zeros((3, 5), dtype=np.uint8))  # grayscale becomes RGB
    _png(tmp_path / "a.png", _solid(3, 5, (10, 20, 30)))
    ds = ImageFolderDataset(tmp_path, transform=lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1))
    assert ds.classes == [] and ds.labels == [-1, -1]
    image, label, path = ds[0]
    assert path.endswith("a.png") and label == -1
    assert image.shape == (3, 3, 5) and image[:, 0, 0].tolist() == [10, 20, 30]
    assert ds[1][0].shape == (3, 3, 5)


def test_extensions_filter(tmp_path):
    _png(tmp_path / "a.png", _solid(2, 2, (0, 0, 0)))
    Image.fromarray(_solid(2, 2, (9, 9, 9)).copy()).save(tmp_path / "b.jpg")
    assert [p.name for p in ImageFolderDataset(tmp_path, extensions=["jpg"]).paths] == ["b.jpg"]


def test_bad_folders_raise(tmp_path):
    with pytest.raises(DGNError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DGNError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    _png(tmp_path / "mixed" / "loose.png", _solid(2, 2, (0, 0, 0)))
    _png(tmp_path / "mixed" / "cls" / "x.png", _solid(2, 2, (0, 0, 0)))
    with pytest.raises(DGNError, match="mixes loose images"):
        ImageFolderDataset(tmp_path / "mixed")


def test_load_images_exact_values_and_resize(tmp_path):
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    a = _png(tmp_path / "a.png", pixels)
    b = _png(tmp_path / "b.png", _solid(4, 6, (255, 0, 128)))
    batch = load_images([a, str(b)])
    assert batch.shape == (2, 3, 4, 6) and batch.dtype == torch.float32
    assert torch.equal(batch[0], torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert torch.equal(batch[1, :, 2, 3], torch.tensor([255.0, 0.0, 128.0]) / 255)
    resized = load_images([a, b], size=(8, 12))
    assert resized.shape == (2, 3, 8, 12)
    assert torch.allclose(resized[1, :, 5, 7], batch[1, :, 0, 0])  # a solid image stays solid
    assert load_images([a], size=5).shape == (1, 3, 5, 5)


def test_load_images_errors(tmp_path):
    a = _png(tmp_path / "a.png", _solid(4, 6, (0, 0, 0)))
    b = _png(tmp_path / "b.png", _solid(5, 6, (0, 0, 0)))
    with pytest.raises(DGNError, match="different sizes"):
        load_images([a, b])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DGNError, match="cannot read image"):
        load_images([tmp_path / "broken.png"])
    with pytest.raises(DGNError):
        load_images([])


def _tar_with(path, members):
    """members: (name, bytes | None for a directory | ('symlink', target))."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(payload, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = payload[1]
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def test_extract_archive_round_trip(tmp_path):
    archive = _tar_with(
        tmp_path / "ok.tar.gz", [("top", None), ("top/a/x.txt", b"hello"), ("top/y.bin", b"\x00\x01")]
    )
    dest = extract_archive(archive, tmp_path / "out")
    assert dest == tmp_path / "out"
    assert (dest / "top" / "a" / "x.txt").read_bytes() == b"hello"
    assert (dest / "top" / "y.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize(
    "members",
    [
        [("fine.txt", b"ok"), ("../escaped.txt", b"evil")],
        [("fine.txt", b"ok"), ("sub/../../escaped.txt", b"evil")],
        [("fine.txt", b"ok"), ("/tmp/dgn-absolute-escape.txt", b"evil")],
        [("fine.txt", b"ok"), ("link", ("symlink", "../escaped.txt"))],
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_extract_archive_refuses_unsafe_members_before_writing(tmp_path, members):
    archive = _tar_with(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "box" / "out"
    with pytest.raises(DGNError, match="refusing to extract"):
        extract_archive(archive, dest)
    assert not (tmp_path / "box" / "escaped.txt").exists()
    assert not (dest / "fine.txt").exists()  # checked before anything is written


def test_extract_archive_rejects_non_archives(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(DGNError, match="cannot extract"):
        extract_archive(tmp_path / "x.tar.gz", tmp_path / "out")
    with pytest.raises(DGNError, match="does not exist"):
        extract_archive(tmp_path / "missing.tar.gz", tmp_path / "out")
