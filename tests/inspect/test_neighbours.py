"""Nearest training images in feature space, and ``dgn inspect neighbours``."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from dgn.cli import main
from dgn.inspect.neighbours import NearestNeighbours, k_nearest, neighbour_montage
from tests.inspect.test_embedding import cifar_sample
from tests.tiny import tiny_pair


def test_k_nearest_is_exact_and_ordered_even_for_large_offsets():
    rng = np.random.RandomState(0)
    base = rng.randn(300, 64).astype(np.float32) + 1e4  # float32 |x|^2 expansion would lose these distances
    queries = base[[7, 123]] + np.float32(0.0)
    idx, dist = k_nearest(queries, base, 5)
    assert idx[:, 0].tolist() == [7, 123] and np.all(dist[:, 0] == 0)
    brute = np.sqrt(((base[None].astype(np.float64) - queries[:, None].astype(np.float64)) ** 2).sum(-1))
    assert np.array_equal(idx, np.argsort(brute, 1, kind="stable")[:, :5])
    assert np.allclose(dist, np.sort(brute, 1)[:, :5])


def test_a_planted_copy_is_found_first_at_distance_zero(one_thread):
    _, classifier = tiny_pair()
    torch.manual_seed(1)
    train = torch.rand(40, 3, 36, 36)
    query = train[17:18].clone()
    for layer in ("fc6", "conv2", "pixel"):
        result = NearestNeighbours(classifier, layer).fit(train).query(query, k=4)
        assert result.indices[0, 0] == 17 and np.all(np.diff(result.distances[0]) >= 0)
        # features of one image and of a batch of 40 differ by float rounding only (CPU conv kernels)
        assert result.distances[0, 0] < 1e-6 * result.distances[0, 1]
        if layer == "pixel":
            assert result.distances[0, 0] == 0.0
    picture = neighbour_montage(query, train, result, tile=32)
    assert picture.shape[1] == 5 * 36 + 4  # query + 4 neighbours, 32 px tiles with 4 px padding


def test_cli_finds_a_cifar_image_among_the_training_images(tmp_path, fixtures_dir, capsys, one_thread):
    images = cifar_sample(fixtures_dir, tmp_path / "cifar", per_class=3)
    query = next((images / "ship").iterdir())
    out = tmp_path / "out"
    assert main(["inspect", "neighbours", "--images", str(images), "--query", str(query), "--k", "3",
                 "--out", str(out)]) == 0
    found = json.loads((out / "neighbours.json").read_text())["queries"][0]["neighbours"]
    assert found[0]["path"] == str(query) and found[0]["distance"] < 1e-6 * found[1]["distance"]
    assert Image.open(out / "neighbours.png").size[0] > Image.open(out / "neighbours.png").size[1]
    assert main(["inspect", "neighbours", "--images", str(images), "--query", str(tmp_path / "x.txt"),
                 "--out", str(out)]) == 2
    assert "--query" in capsys.readouterr().err
    assert main(["inspect", "neighbours", "--images", str(images), "--query", str(query), "--layer", "fc9",
                 "--out", str(out)]) == 2
