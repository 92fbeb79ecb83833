"""Memorisation audit: exact nearest neighbours per class, in pixel and code spaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dgn import audit
from dgn.audit import ImageSet, MemorisationAudit, nearest
from dgn.encoding import encode
from dgn.errors import DGNError
from tests.tiny import tiny_pair


def _world(seed: int = 0, classes: int = 3, per_class: int = 6) -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(classes * per_class, 3, 36, 36, generator=g)
    return images, [c for c in range(classes) for _ in range(per_class)]


def _brute(q: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - x[None].astype(np.float64)) ** 2).sum(-1))
    return d.argmin(1), d.min(1)


def test_exact_copy_found_at_zero_in_every_space_and_flagged():
    _, clf = tiny_pair()
    images, labels = _world()
    train = ImageSet.from_tensors(images, labels)
    held_images, held_labels = _world(seed=1, per_class=3)
    heldout = ImageSet.from_tensors(held_images, held_labels)
    other = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(5))
    synthetic = ImageSet.from_tensors(torch.cat([images[8:9].clone(), other]), [1, 1], ["copy", "fresh"])
    result = MemorisationAudit(clf, k=3).audit(synthetic, train, heldout)
    copy, fresh = result.items
    for space in ("pixel", "conv1", "conv2", "fc6", "fc8"):
        assert copy["nearest"][space]["index"] == 8
        assert copy["nearest"][space]["distance"] == 0.0
        assert result.scales[1][space] > 0
    assert copy["flagged"] is True and len(copy["flagged_spaces"]) == 5
    assert fresh["flagged"] is False


def test_a_copy_is_at_zero_whatever_batch_it_was_encoded_in():
    """Codes differ in their last bits between batch layouts on some CPUs (AVX2 kernels); the audit's
    final re-rank encodes each image alone, so a planted copy is at 0 for every batch size."""
    _, clf = tiny_pair()
    images, labels = _world()
    train = ImageSet.from_tensors(images, labels)
    synthetic = ImageSet.from_tensors(torch.cat([torch.rand(2, 3, 36, 36), images[8:9].clone()]), [1, 1, 1])
    for batch_size in (1, 2, 5, 256):
        copy = MemorisationAudit(clf, k=3, batch_size=batch_size).audit(synthetic, train).items[2]
        assert all(hit["index"] == 8 and hit["distance"] == 0.0 for hit in copy["nearest"].values())


def test_near_copy_distance_is_exact_where_faiss_is_wrong():
    import faiss  # after torch (see the FAISS notes)

    rng = np.random.default_rng(0)
    d = 200_000
    base = (1000.0 + rng.standard_normal((20, d)) * 30).astype(np.float32)
    query = (base[3].astype(np.float64) + rng.standard_normal(d) * 1e-3).astype(np.float32)[None]
    exact = np.sqrt(((query[0].astype(np.float64) - base[3].astype(np.float64)) ** 2).sum())
    faiss_d2, faiss_i = faiss.knn(query, base, 5)
    assert faiss_i[0, 0] == 3
    faiss_dist = np.sqrt(max(float(faiss_d2[0, 0]), 0.0))
    assert abs(faiss_dist - exact) > 0.1 * exact  # FAISS's float32 norm expansion is far off
    idx, dist = nearest(query, base, k=5)
    assert idx[0] == 3
    assert dist[0] == pytest.approx(exact, rel=1e-9)


def test_classes_never_cross_unless_asked():
    _, clf = tiny_pair()
    images, labels = _world()
    train = ImageSet.from_tensors(images, labels)
    # a synthetic image of class 0 that is an exact copy of a class-2 training image
    synthetic = ImageSet.from_tensors(images[14:15].clone(), [0])
    same = MemorisationAudit(clf, layers=["pixel", "fc6"], k=6).audit(synthetic, train).items[0]
    for space in ("pixel", "fc6"):
        assert labels[same["nearest"][space]["index"]] == 0
        assert same["nearest"][space]["distance"] > 0
    assert "nearest_any_class" not in same
    both = MemorisationAudit(clf, layers=["pixel", "fc6"], all_classes=True).audit(synthetic, train).items[0]
    for space in ("pixel", "fc6"):
        hit = both["nearest_any_class"][space]
        assert (hit["index"], hit["class"]) == (14, 2)
        # codes of one image can differ at float32 rounding level with the batch it is encoded in
        assert hit["distance"] == 0.0 if space == "pixel" else hit["distance"] < 1e-4
        assert labels[both["nearest"][space]["index"]] == 0


def test_common_offset_changes_no_neighbour():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((40, 300))
    queries = rng.standard_normal((9, 300))
    idx, dist = nearest(queries, base, k=40)
    idx_off, dist_off = nearest(queries + 1e4, base + 1e4, k=8)
    np.testing.assert_array_equal(idx, idx_off)
    np.testing.assert_allclose(dist, dist_off, rtol=1e-6)


def test_matches_brute_force_numpy():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((50, 64)).astype(np.float32)
    queries = rng.standard_normal((11, 64)).astype(np.float32)
    idx, dist = nearest(queries, base, k=10)
    b_idx, b_dist = _brute(queries, base)
    np.testing.assert_array_equal(idx, b_idx)
    np.testing.assert_allclose(dist, b_dist, rtol=1e-12)
    # and through the whole audit, per class, in every space
    _, clf = tiny_pair()
    images, labels = _world(seed=3)
    train = ImageSet.from_tensors(images, labels)
    synth_images, synth_labels = _world(seed=4, per_class=2)
    synthetic = ImageSet.from_tensors(synth_images, synth_labels)
    auditor = MemorisationAudit(clf, k=6)
    result = auditor.audit(synthetic, train)
    lab = np.array(labels)
    per_class = [encode(clf, images[lab == c], auditor.spaces) for c in range(3)]  # as the audit streams
    codes = {s.name: np.concatenate([p[s.name] for p in per_class]) for s in auditor.spaces}
    q_codes = encode(clf, synth_images, auditor.spaces)
    lab = np.array(labels)
    for i, item in enumerate(result.items):
        members = np.flatnonzero(lab == item["class"])
        for s in auditor.spaces:
            j, d = _brute(q_codes[s.name][i : i + 1], codes[s.name][members])
            hit = item["nearest"][s.name]
            assert hit["index"] == members[j[0]]
            # the reported distance is measured on codes of the two images encoded alone (see the next
            # test): within float32 rounding (1e-5 of the code's norm) of the batched codes' distance, and
            # exactly the alone codes' one
            assert hit["distance"] == pytest.approx(d[0], abs=1e-5 * float(np.linalg.norm(q_codes[s.name][i])))
            alone = [encode(clf, x[None], auditor.spaces, 1)[s.name][0].astype(np.float64)
                     for x in (synth_images[i], images[hit["index"]])]
            assert hit["distance"] == pytest.approx(np.linalg.norm(alone[0] - alone[1]), rel=1e-12, abs=1e-12)


def test_folders_run_dir_and_outputs(tmp_path):
    from dgn.render import save_png

    _, clf = tiny_pair()
    images, labels = _world()
    names = ["cat", "dog", "emu"]
    for i, (img, y) in enumerate(zip(images, labels)):
        save_png(tmp_path / "train" / names[y] / f"{i:02d}.png", (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    run = tmp_path / "run"
    rows = []
    for unit, src in ((0, 2), (2, 13)):
        save_png(run / "images" / f"fc8_{unit}.png", (images[src].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        rows.append({"key": f"fc8:{unit}#r0", "layer": "fc8", "unit": unit, "target": f"fc8:{unit}", "image": f"images/fc8_{unit}.png"})
    rows.append({"key": "fc6:0#r0", "layer": "fc6", "unit": 0, "target": "fc6:0", "image": "images/fc8_0.png"})
    (run / "manifest.json").write_text(json.dumps({"rows": rows}))
    train, classes = ImageSet.from_folder(tmp_path / "train", (36, 36))
    assert classes == names
    synthetic = audit.synthetic_from_run(run, (36, 36))
    assert synthetic.labels == [0, 2]  # the fc6 row has no class by default
    assert audit.synthetic_from_run(run, (36, 36), {"fc6:0#r0": 1}).labels == [1]
    result = MemorisationAudit(clf, layers=["pixel", "conv1"]).audit(synthetic, train)
    content = audit.write_audit(tmp_path / "out", result, synthetic, train, classes)
    written = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert written == content
    assert written["items"][1]["nearest"]["pixel"]["id"] == "emu/13.png"
    assert written["items"][1]["nearest"]["pixel"]["distance"] == 0.0
    assert written["items"][0]["flagged"] is None  # no held-out set, no scale
    assert (tmp_path / "out" / "montage.png").stat().st_size > 0


def test_cli_runs_and_reports_dgnerror(tmp_path, monkeypatch, capsys):
    import argparse

    from dgn import models
    from dgn.cli import audit as audit_cli
    from dgn.render import save_png

    _, clf = tiny_pair()
    monkeypatch.setattr(models, "load_classifier", lambda name, weights_dir=None: clf)
    images, labels = _world()
    held, held_labels = _world(seed=1, per_class=2)
    for root, imgs, labs in (("train", images, labels), ("held", held, held_labels)):
        for i, (img, y) in enumerate(zip(imgs, labs)):
            array = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            save_png(tmp_path / root / f"c{y}" / f"{i:02d}.png", array)
    run = tmp_path / "run"
    save_png(run / "images" / "a.png", (images[4].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    row = {"key": "fc8:0#r0", "layer": "fc8", "unit": 0, "target": "fc8:0", "image": "images/a.png"}
    (run / "manifest.json").write_text(json.dumps({"rows": [row]}))
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    argv = ["--synthetic", str(run), "--train", str(tmp_path / "train"), "--classifier", "tiny", "--device", "cpu"]
    args = parser.parse_args([*argv, "--heldout", str(tmp_path / "held"), "--out", str(tmp_path / "out")])
    assert audit_cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "flagged 1 of 1" in printed and "pixel" in printed
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["flagged"] == 1
    bad = parser.parse_args([*argv, "--layers", "pixel,nope", "--out", str(tmp_path / "o2")])
    with pytest.raises(DGNError):
        audit_cli.run(bad)


def _cifar_run(out, display: str):
    from dgn.models import load_classifier, load_generator
    from dgn.outputs import RunWriter
    from dgn.synthesis import DGNAM, ActMaxSettings

    dgnam = DGNAM(load_generator("cifar-deepsim-fc6"), load_classifier("cifar-caffenet"), ActMaxSettings(steps=8),
                  "cpu")
    writer = RunWriter(out, {**dgnam.describe(), "display": display}, display=display)
    dgnam.synthesize(["fc8:0", "fc8:3", "conv5:1"], 1, 0, upper_bound=2.0, on_chunk=lambda part: writer.write(part, dgnam))
    writer.finish()
    return dgnam


def test_a_run_is_audited_on_the_generators_images_whatever_its_display(tmp_path, one_thread):
    """The act_max display shifts blue and contrast: the audit regenerates the images from the run's codes, so
    a run audited with either display gives the same distances."""
    from dgn.data import load_images
    from dgn.models import load_classifier

    for display in ("act_max", "mean"):
        _cifar_run(tmp_path / display, display)
    images, _ = _world(seed=3)
    train = ImageSet.from_tensors(torch.nn.functional.interpolate(images[:12], size=(32, 32)), [0, 3] * 6)
    auditor = MemorisationAudit(load_classifier("cifar-caffenet"), layers=["pixel", "fc6"], k=4)
    seen, items = {}, {}
    for display in ("act_max", "mean"):
        synthetic = audit.synthetic_from_run(tmp_path / display, (32, 32))
        assert synthetic.labels == [0, 3]  # the fc8 rows
        seen[display] = synthetic.loader([0, 1])
        items[display] = [{**it, "path": None} for it in auditor.audit(synthetic, train).items]
    assert torch.equal(seen["act_max"], seen["mean"]) and items["act_max"] == items["mean"]
    # they are the generator's images in RGB 0..1: the mean-display PNG holds them up to 8-bit rounding,
    # the act_max-display PNG does not
    mean_png, act_max_png = (load_images([tmp_path / d / "images" / "fc8_0000_r00.png"])[0] for d in ("mean", "act_max"))
    assert (seen["mean"][0] - mean_png).abs().max() <= 0.5 / 255 + 1e-6
    assert (seen["mean"][0] - act_max_png).abs().max() > 0.02

    # without the generator: an act_max-display run is refused, not misread; a mean-display one reads its PNGs
    for display in ("act_max", "mean"):
        manifest = json.loads((tmp_path / display / "manifest.json").read_text())
        manifest["config"]["generator"]["name"] = "deepsim-fc7"  # not available offline
        (tmp_path / display / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DGNError, match="act_max display, which cannot be inverted"):
        audit.synthetic_from_run(tmp_path / "act_max", (32, 32))
    assert torch.equal(audit.synthetic_from_run(tmp_path / "mean", (32, 32)).loader([0]), mean_png[None])
