"""PCA and exact t-SNE layouts, the thumbnail picture, and ``dgn inspect embedding``."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from dgn.cli import main
from dgn.inspect.embedding import neighbour_purity, pca, snap_to_grid, thumbnail_picture, tsne

ARCHIVE = "data/cifar10_test_jpg/cifar10_test_jpg_full.tar.gz"


def cifar_sample(fixtures_dir: Path, dest: Path, per_class: int = 3) -> Path:
    """The first ``per_class`` real CIFAR-10 test JPEGs of each class, as ``dest/<class>/<file>``."""
    seen: dict[str, int] = {}
    with tarfile.open(fixtures_dir / ARCHIVE, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            cls = Path(member.name).parent.name
            if seen.get(cls, 0) < per_class:
                seen[cls] = seen.get(cls, 0) + 1
                (dest / cls).mkdir(parents=True, exist_ok=True)
                (dest / cls / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    return dest


def _two_clusters(n: int = 60, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.RandomState(seed)
    x = np.concatenate([rng.randn(n // 2, 10), rng.randn(n // 2, 10) + 8.0])
    return x, [0] * (n // 2) + [1] * (n // 2)


def test_tsne_is_deterministic_and_separates_two_clusters(one_thread):
    x, labels = _two_clusters()
    first = tsne(x, perplexity=10, iterations=500, seed=3)
    assert np.array_equal(first, tsne(x, perplexity=10, iterations=500, seed=3))
    assert not np.array_equal(first, tsne(x, perplexity=10, iterations=500, seed=4))
    assert neighbour_purity(first, labels) == 1.0
    # the two clusters end up far apart compared with their own spread
    a, b = first[:30], first[30:]
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 2 * max(a.std(0).max(), b.std(0).max())


def test_pca_finds_the_axis_of_largest_variance_and_fixes_its_sign():
    rng = np.random.RandomState(0)
    x = rng.randn(200, 3) * np.array([10.0, 1.0, 0.1])
    out = pca(x, 2)
    assert out.shape == (200, 2)
    assert np.corrcoef(out[:, 0], x[:, 0])[0, 1] > 0.99  # first axis = the widest coordinate, same sign
    assert np.array_equal(out, pca(x, 2))
    assert np.allclose(pca(-x, 2), -out)  # the axes (and their signs) do not depend on the data's sign


def test_thumbnails_land_at_their_positions_and_grid_cells_are_distinct():
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    picture = thumbnail_picture([red, blue], np.array([[0.0, 0.0], [1.0, 1.0]]), size=100, thumb=10)
    assert tuple(picture[95, 5]) == (255, 0, 0)  # first point: bottom left (y grows upwards)
    assert tuple(picture[5, 95]) == (0, 0, 255)  # second point: top right
    cells = snap_to_grid(np.zeros((9, 2)), 3)  # nine points at one place fill the 3x3 grid
    assert len({tuple(c) for c in cells}) == 9


def test_cli_embeds_real_cifar_images(tmp_path, fixtures_dir, capsys, one_thread):
    images = cifar_sample(fixtures_dir, tmp_path / "cifar", per_class=2)
    out = tmp_path / "out"
    assert main(["inspect", "embedding", "--images", str(images), "--perplexity", "5", "--iterations", "200",
                 "--size", "300", "--thumb", "24", "--out", str(out)]) == 0
    assert Image.open(out / "embedding.png").size == (300, 300)
    points = json.loads((out / "embedding.json").read_text())["points"]
    assert len(points) == 20 and {p["label"] for p in points} == set(range(10))
    assert main(["inspect", "embedding", "--images", str(images), "--out", str(out)]) == 2  # perplexity 30 > 20 images
    assert "perplexity" in capsys.readouterr().err
    assert main(["inspect", "embedding", "--images", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
