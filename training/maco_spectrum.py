"""The magnitude spectrum MACO keeps fixed, from the CIFAR-10 world's 8,000 training images.

Writes ``dgn/pretrained/maco-magnitude-cifar10.safetensors`` (one tensor "magnitude", (3, 32, 17)): the mean
|real FFT| of the images' decorrelated colour channels, each image standardised first
(``dgn.maco.natural_magnitude``). The training images are those of ``train_cifar_world.py``'s split of the
CIFAR-10 test JPEGs in ``../shared/fixtures``.

Usage::

    .venv/bin/python training/maco_spectrum.py [--fixtures ../shared/fixtures]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "training"))

from safetensors.torch import save_file
from train_cifar_world import split_indices

from dgn.data import ImageFolderDataset, extract_archive, load_images
from dgn.maco import SHIPPED_MAGNITUDE, natural_magnitude

ARCHIVE = "data/cifar10_test_jpg/cifar10_test_jpg_full.tar.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures")
    parser.add_argument("--out", type=Path, default=SHIPPED_MAGNITUDE)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = extract_archive(args.fixtures / ARCHIVE, tmp)
        folder = next(p.parent.parent for p in Path(root).rglob("*.jpg"))
        dataset = ImageFolderDataset(folder)
        train, _ = split_indices(dataset.labels, 800, 0)
        images = load_images([dataset.paths[i] for i in train], 32)
    magnitude = natural_magnitude(images).contiguous()
    save_file({"magnitude": magnitude}, str(args.out), metadata={"images": f"{len(train)} CIFAR-10 training images"})
    print(f"wrote {args.out}: magnitude {tuple(magnitude.shape)} from {len(train)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
