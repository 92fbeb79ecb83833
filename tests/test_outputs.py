import json

import pytest
from safetensors.torch import load_file

from dgn.errors import DGNError
from dgn.outputs import RunWriter, read_manifest
from dgn.synthesis import DGNAM, ActMaxSettings
from tests.tiny import tiny_pair

TARGETS = ["fc8:0", "fc8:1", "conv2:3"]


def run(out, resume=False, fail_after=None, targets=TARGETS):
    gen, clf = tiny_pair()
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=8), device="cpu")
    writer = RunWriter(out, {**dgnam.describe(), "targets": targets}, resume=resume)
    chunks = []

    def on_chunk(part):
        if fail_after is not None and len(chunks) == fail_after:
            raise KeyboardInterrupt
        writer.write(part, dgnam)
        chunks.append(part)

    dgnam.synthesize(targets, restarts=2, batch_size=2, skip=writer.done_keys(), on_chunk=on_chunk)
    return writer.finish(), chunks


def test_manifest_lists_every_row_with_its_provenance(tmp_path):
    manifest, _ = run(tmp_path)
    rows = manifest["rows"]
    assert len(rows) == 6
    for row in rows:
        assert {"target", "layer", "unit", "restart", "seed", "image", "act_start", "act_end", "act_best"} <= set(row)
        assert (tmp_path / row["image"]).is_file() and (tmp_path / row["image_best"]).is_file()
        codes = load_file(tmp_path / row["code"])
        assert codes["last"].shape == (16,)
    assert manifest["config"]["generator"]["weights_sha256"] == "random"
    assert (tmp_path / "montage.png").is_file()
    assert read_manifest(tmp_path)["finished"] is True


def test_interrupted_run_leaves_only_complete_files_and_resume_finishes_it(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, fail_after=1)
    partial = json.loads((tmp_path / "manifest.json").read_text())
    assert len(partial["rows"]) == 2 and partial["finished"] is False
    assert not list(tmp_path.rglob("*.tmp"))
    manifest, chunks = run(tmp_path, resume=True)
    assert sum(len(c.rows) for c in chunks) == 4  # only the unfinished rows ran
    fresh, _ = run(tmp_path / "fresh")
    assert [r["act_end"] for r in manifest["rows"]] == [r["act_end"] for r in fresh["rows"]]


def test_existing_run_needs_resume_and_the_same_configuration(tmp_path):
    run(tmp_path)
    with pytest.raises(DGNError, match="--resume"):
        run(tmp_path)
    with pytest.raises(DGNError, match="differs in targets"):
        run(tmp_path, resume=True, targets=["fc8:2"])


def test_outputs_are_ordinary_readable_files(tmp_path):
    run(tmp_path)
    for path in [tmp_path / "manifest.json", tmp_path / "montage.png", *tmp_path.glob("images/*.png")]:
        assert path.stat().st_mode & 0o777 == 0o644, path
