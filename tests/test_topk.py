"""Top-k dataset examples: a streaming, chunked, sharded, resumable pass equals sorting every activation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dgn import spaces
from dgn.cli import main
from dgn.errors import DGNError
from dgn.layers import forward_to
from dgn.topk import EMPTY_ID, ExampleFinder, TopExamples, merge_parts
from tests.cifar import cifar_test_subset
from tests.tiny import tiny_pair


def _images(folder, n: int = 23, seed: int = 0) -> list:
    """``n`` random 36x36 PNGs in two class folders."""
    rng = np.random.RandomState(seed)
    paths = []
    for i in range(n):
        path = folder / ("a" if i % 2 else "b") / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 256, (36, 36, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return sorted(paths)


def _brute_force(finder: ExampleFinder, paths, layer: str):
    """Every image's activation at once: per unit the (score, index) order by hand."""
    with torch.no_grad():
        acts = forward_to(finder.classifier.module, spaces.from_rgb01(finder.load(paths), finder.classifier.space),
                          [layer])[layer]
    if acts.dim() == 4:
        flat = acts.flatten(2)
        scores, where = flat.max(2)
        positions = torch.stack([where // acts.shape[3], where % acts.shape[3]], -1)
    else:
        scores, positions = acts, None
    return scores, positions


def test_the_pass_equals_sorting_every_activation_top_and_bottom(tmp_path, one_thread):
    paths = _images(tmp_path)
    finder = ExampleFinder(tiny_pair()[1], ["conv2", "fc8"], k=5, bottom=3, sample=10)
    examples = finder.run(paths, batch_size=4)
    for layer in ("conv2", "fc8"):
        scores, positions = _brute_force(finder, paths, layer)
        ex = examples[layer]
        for unit in range(ex.units):
            column = scores[:, unit].tolist()
            top = sorted(range(len(paths)), key=lambda i: (-column[i], i))[:5]
            low = sorted(range(len(paths)), key=lambda i: (column[i], i))[:3]
            assert ex.ids[unit].tolist() == top and ex.bottom_ids[unit].tolist() == low
            torch.testing.assert_close(ex.scores[unit], scores[top, unit], atol=1e-5, rtol=1e-5)
            if positions is not None:  # the position is where the channel peaked in that image
                assert ex.positions[unit].tolist() == positions[top, unit].tolist()
        # 23 images, a sample of at most 10: every 3rd image (0, 3, ..., 21), spread over both class folders
        assert finder.stride == 3 and ex.sample.shape == (ex.units, 8)
        torch.testing.assert_close(ex.sample, scores[::3].T, atol=1e-5, rtol=1e-5)
    assert examples["conv2"].spatial and not examples["fc8"].spatial


def test_fewer_images_than_k_leave_empty_slots(tmp_path):
    paths = _images(tmp_path, n=3)
    examples = ExampleFinder(tiny_pair()[1], ["fc8"], k=5).run(paths, batch_size=2)
    assert (examples["fc8"].ids[:, :3] < 3).all() and (examples["fc8"].ids[:, 3:] == EMPTY_ID).all()


def test_ranks_merged_equal_one_process_and_a_stopped_pass_resumes_to_the_same(tmp_path, one_thread):
    paths = _images(tmp_path)
    finder = ExampleFinder(tiny_pair()[1], ["conv1", "fc6"], k=4, bottom=2, sample=7)
    whole = finder.run(paths, batch_size=3)
    parts = [finder.run(paths, batch_size=3, rank=r, world_size=3) for r in range(3)]
    merged = merge_parts(parts)
    for layer, ex in whole.items():
        for name, value in ex.tensors().items():
            assert torch.equal(value, merged[layer].tensors()[name]), name

    checkpoint = tmp_path / "state.safetensors"
    seen = []

    def stop_after_three_chunks(n: int) -> None:
        seen.append(n)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finder.run(paths, batch_size=3, checkpoint=checkpoint, checkpoint_every=2, progress=stop_after_three_chunks)
    assert checkpoint.exists()
    counted = []
    resumed = finder.run(paths, batch_size=3, checkpoint=checkpoint, checkpoint_every=2, progress=counted.append)
    assert counted[0] == 6 and sum(counted) == len(paths)  # two chunks came from the checkpoint
    for layer, ex in whole.items():
        for name, value in ex.tensors().items():
            assert torch.equal(value, resumed[layer].tensors()[name]), name
    with pytest.raises(DGNError, match="another network, layers, k"):
        finder.run(paths, batch_size=5, checkpoint=checkpoint)


def test_cli_writes_an_index_with_receptive_field_crops(tmp_path, capsys):
    from dgn.models import input_shape, load_classifier
    from dgn.receptive import ReceptiveFields

    root = tmp_path / "imgs"
    _images(root, n=12)
    out = tmp_path / "topk"
    assert main(["topk", "--classifier", "cifar-caffenet", "--device", "cpu", "--layers",
                 "conv5,fc8", "--images", str(root), "--k", "3", "--bottom", "1", "--limit", "10",
                 "--out", str(out)]) == 0
    index = json.loads((out / "examples.json").read_text())
    assert index["config"]["count"] == 10 and len(index["images"]) == 10
    assert index["labels"][:2] == ["a", "a"]  # class folders name each image
    conv5 = index["layers"]["conv5"]
    assert conv5["spatial"] and len(conv5["units"]) == 64
    first = conv5["units"][7]["top"][0]
    crop = Image.open(out / first["crop"])
    top = TopExamples.read(out)
    net = load_classifier("cifar-caffenet")
    _, _, h, w = ReceptiveFields(net.module, input_shape(net)).get("conv5", tuple(first["position"]))
    assert crop.size == (w, h)
    assert [e["score"] for e in top.unit("conv5", 7)] == [e["score"] for e in conv5["units"][7]["top"]]
    assert len(top.unit("fc8", 3, bottom=True)) == 1 and top.unit("fc8", 3)[0]["crop"] is None
    assert not (out / "state").exists()
    capsys.readouterr()
    assert main(["topk", "--classifier", "caffenet", "--random-weights", "--layers", "fc8", "--images", str(root),
                 "--out", str(out)]) == 2
    assert "already holds examples" in capsys.readouterr().err
    assert main(["topk", "--classifier", "caffenet", "--random-weights", "--layers", "fc99", "--images", str(root),
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fc99" in err


def test_cifar_output_units_top_images_are_their_class(fixtures_dir, tmp_path):
    from dgn.data import ImageFolderDataset
    from dgn.models import load_classifier

    root = cifar_test_subset(fixtures_dir, tmp_path / "cifar", every=20)  # 500 real test images
    dataset = ImageFolderDataset(root)
    examples = ExampleFinder(load_classifier("cifar-caffenet"), ["fc8"], k=9).run(dataset.paths, batch_size=100)
    labels = torch.tensor(dataset.labels)
    hits = (labels[examples["fc8"].ids] == torch.arange(10)[:, None]).float().mean(1)
    assert float(hits.mean()) >= 0.7 and int((hits >= 0.5).sum()) >= 8, hits  # mostly their class (chance: 0.1)


def test_synthesize_shows_each_targets_top_images_beside_its_own(tmp_path, capsys):
    root = tmp_path / "imgs"
    _images(root, n=8)
    examples = tmp_path / "topk"
    world = ["--classifier", "cifar-caffenet", "--device", "cpu"]
    assert main(["topk", *world, "--layers", "conv3,fc8", "--images", str(root), "--k", "4", "--out",
                 str(examples)]) == 0
    run = tmp_path / "run"
    assert main(["synthesize", *world, "--generator", "cifar-deepsim-fc6", "--target", "fc8:2", "--target",
                 "conv3:5", "--target", "conv3:5@mean", "--restarts", "2", "--steps", "3", "--topk", str(examples),
                 "--out", str(run)]) == 0
    figure = np.asarray(Image.open(run / "examples.png"))
    assert figure.shape[0] > 2 * 96 and figure.shape[1] > 6 * 96  # two unit targets x (4 real + 2 synthetic)
    capsys.readouterr()
    assert main(["synthesize", *world, "--generator", "cifar-deepsim-fc6", "--target", "fc7:2", "--steps", "2",
                 "--topk", str(examples), "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "no examples of layer 'fc7'" in err and not (tmp_path / "other").exists()
    assert main(["synthesize", "--classifier", "caffenet", "--random-weights", "--target", "fc8:2", "--steps", "2",
                 "--topk", str(examples), "--out", str(tmp_path / "another")]) == 2
    assert "computed for classifier 'cifar-caffenet'" in capsys.readouterr().err


def test_multifaceted_restarts_start_from_the_clusters_of_a_units_top_images(tmp_path, capsys):
    import safetensors.torch

    from dgn.models import load_classifier, load_generator
    from dgn.starts import encode_codes, facet_codes, read_start_images

    root = tmp_path / "imgs"
    _images(root, n=16)
    examples = tmp_path / "topk"
    world = ["--classifier", "cifar-caffenet", "--device", "cpu"]
    assert main(["topk", *world, "--layers", "fc8", "--images", str(root), "--k", "10", "--out", str(examples)]) == 0
    run = tmp_path / "run"
    assert main(["synthesize", *world, "--generator", "cifar-deepsim-fc6", "--target", "fc8:4", "--restarts", "3",
                 "--steps", "1", "--topk", str(examples), "--facets", "--facet-images", "8", "--out", str(run)]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["start"]["mode"] == "multifaceted"
    # by hand: fc6 codes of the unit's 8 best images, 3 clusters, largest first
    top = TopExamples.read(examples).unit("fc8", 4)[:8]
    codes = encode_codes(load_classifier("cifar-caffenet"), "fc6", read_start_images([t["image"] for t in top], (32, 32)),
                         load_generator("cifar-deepsim-fc6").code_shape)
    expected = facet_codes(codes, 3)
    for r, row in enumerate(manifest["rows"]):  # one step only evaluates: the code is its start
        code = safetensors.torch.load_file(run / row["code"])["last"]
        torch.testing.assert_close(code.float(), expected[r], atol=1e-4, rtol=0)
    assert not torch.allclose(expected[0], expected[1])
    capsys.readouterr()
    assert main(["synthesize", *world, "--generator", "cifar-deepsim-fc6", "--target", "fc8:4", "--facets",
                 "--out", str(tmp_path / "no")]) == 2
    assert "--topk" in capsys.readouterr().err


def test_images_decoded_by_worker_processes_give_the_same_examples(tmp_path, one_thread):
    paths = _images(tmp_path, n=11)
    finder = ExampleFinder(tiny_pair()[1], ["conv2", "fc8"], k=3, bottom=1, sample=5)
    here, workers = finder.run(paths, batch_size=3), finder.run(paths, batch_size=3, workers=2)
    for layer, ex in here.items():
        for name, value in ex.tensors().items():
            assert torch.equal(value, workers[layer].tensors()[name]), name
