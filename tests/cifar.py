"""The real CIFAR-10 test JPEGs of the shared fixtures, and the fixed subset the heavy tests read."""

from __future__ import annotations

import tarfile
from pathlib import Path

CIFAR_TEST_ARCHIVE = "data/cifar10_test_jpg/cifar10_test_jpg_full.tar.gz"
CIFAR_SUBSET_EVERY = 5  # the fixed subset of the heavy tests: files 0000, 0005, ... of each class, 2,000 images


def cifar_test_subset(fixtures_dir: Path, dest: Path, every: int = CIFAR_SUBSET_EVERY) -> Path:
    """Extract every ``every``-th CIFAR-10 test JPEG of each class (by number) to ``dest/<class>/NNNN.jpg``.

    The images are read straight from the fixture archive; ``every=1`` gives all 10,000.
    """
    with tarfile.open(fixtures_dir / CIFAR_TEST_ARCHIVE) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and member.name.endswith(".jpg") and int(Path(member.name).stem) % every == 0:
                (dest / parts[-2]).mkdir(parents=True, exist_ok=True)
                (dest / parts[-2] / parts[-1]).write_bytes(tar.extractfile(member).read())
    return dest
