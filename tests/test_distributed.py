"""Sharding rows across torchrun ranks: the deterministic rule, part manifests, and a real 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dgn.distributed import World, shard_skip
from dgn.errors import DGNError


def test_chunks_go_round_robin_and_match_the_single_process_chunks():
    keys = [f"k{i}" for i in range(11)]
    done = {"k1", "k6"}
    todo = [k for k in keys if k not in done]
    single_chunks = [todo[i : i + 3] for i in range(0, len(todo), 3)]
    mine = [[k for k in keys if k not in shard_skip(keys, done, 3, World(rank, 2))] for rank in range(2)]
    assert mine[0] == single_chunks[0] + single_chunks[2]
    assert mine[1] == single_chunks[1]
    # every row to do runs exactly once, and re-chunking a rank's rows by 3 gives whole single-process chunks
    assert sorted(mine[0] + mine[1]) == sorted(todo)
    assert [mine[0][i : i + 3] for i in range(0, len(mine[0]), 3)] == [single_chunks[0], single_chunks[2]]
    assert shard_skip(keys, done, 3, World()) == done


def test_world_reads_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = World.from_env()
    assert (world.rank, world.size, world.local_rank, world.is_main, world.part_name) == (3, 4, 1, False, "rank-0003")
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(DGNError, match="inconsistent"):
        World.from_env()


def _dgn(args: list[str], tmp_path: Path, launcher: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, *launcher, "-m", "dgn", *args], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The same CIFAR-world synthesis run by one process (``single``) and by 2 torchrun ranks (``sharded``)."""
    tmp = tmp_path_factory.mktemp("runs")
    run = ["synthesize", "--generator", "cifar-deepsim-fc6", "--classifier", "cifar-caffenet",
           "--target", "fc8:0-4", "--target", "conv5:3", "--restarts", "1", "--steps", "6",
           "--batch-size", "2", "--device", "cpu"]
    single = _dgn([*run, "--out", "single"], tmp, [])
    assert single.returncode == 0, single.stderr
    sharded = _dgn([*run, "--out", "sharded"], tmp, TORCHRUN)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    return tmp, sharded


def test_two_process_run_equals_a_single_process_run(runs):
    """torchrun with 2 gloo ranks on CPU writes the same manifest and byte-identical images as one process."""
    tmp_path, sharded = runs
    one = json.loads((tmp_path / "single" / "manifest.json").read_text())
    two = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert two["finished"] and two["config"] == one["config"]
    assert two["rows"] == one["rows"]
    assert len(two["rows"]) == 6
    for row in one["rows"]:
        for key in ("image", "image_best", "code"):
            assert (tmp_path / "sharded" / row[key]).read_bytes() == (tmp_path / "single" / row[key]).read_bytes()
    assert not (tmp_path / "sharded" / "parts").exists()
    assert (tmp_path / "sharded" / "montage.png").exists()
    assert sharded.stdout.count("wrote 6 images") == 1  # only rank 0 prints the summary
    # 3 chunks of 2 rows: rank 0 ran chunks 0 and 2, rank 1 chunk 1
    assert "rank 0/2: optimised 4 rows" in sharded.stdout and "rank 1/2: optimised 2 rows" in sharded.stdout


def test_two_process_evolution_equals_a_single_process_evolution(tmp_path):
    """dgn evolve's rows shard across 2 ranks like synthesize's: the same manifest and byte-identical codes."""
    run = ["evolve", "--generator", "cifar-deepsim-fc6", "--classifier", "cifar-caffenet", "--target", "fc8:0-3",
           "--optimizer", "cmaes", "--evaluations", "40", "--population", "8", "--batch-size", "2", "--device", "cpu"]
    single = _dgn([*run, "--out", "single"], tmp_path, [])
    assert single.returncode == 0, single.stderr
    sharded = _dgn([*run, "--out", "sharded"], tmp_path, TORCHRUN)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    one = json.loads((tmp_path / "single" / "manifest.json").read_text())
    two = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert two["rows"] == one["rows"] and len(one["rows"]) == 4
    for row in one["rows"]:
        assert (tmp_path / "sharded" / row["code"]).read_bytes() == (tmp_path / "single" / row["code"]).read_bytes()
    assert "rank 0/2: evolved 2 rows" in sharded.stdout and "rank 1/2: evolved 2 rows" in sharded.stdout


def test_two_process_audit_equals_a_single_process_audit(runs):
    """The audit's classes split across 2 ranks give the same audit.json, any-class search included."""
    import numpy as np

    from dgn.render import save_png

    tmp_path, _ = runs
    rng = np.random.default_rng(0)
    for root, per_class in (("train", 4), ("held", 2)):
        for c in range(5):
            for i in range(per_class):
                save_png(tmp_path / root / f"class{c}" / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    audit = ["audit", "--synthetic", "single", "--train", "train", "--heldout", "held", "--classifier",
             "cifar-caffenet", "--all-classes", "--device", "cpu"]
    single = _dgn([*audit, "--out", "audit1"], tmp_path, [])
    assert single.returncode == 0, single.stderr
    sharded = _dgn([*audit, "--out", "audit2"], tmp_path, TORCHRUN)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    one = json.loads((tmp_path / "audit1" / "audit.json").read_text())
    assert json.loads((tmp_path / "audit2" / "audit.json").read_text()) == one
    assert len(one["items"]) == 5 and all("nearest_any_class" in item for item in one["items"])


def _chunk(units: list[int]):
    import torch

    from dgn.rows import Row, RowsResult
    from dgn.targets import Target

    n = len(units)
    planned = [Row(Target("fc8", u), 0, u, f"fc8:{u}") for u in units]
    zeros = torch.zeros(n)
    return RowsResult(planned, torch.zeros(n, 4), torch.zeros(n, 4), zeros, zeros + 1, zeros + 1,
                      zeros.long(), [(0, 0, 8, 8)] * n)


class _Flat:
    """A stand-in method whose "codes" are already 3x8x8 images (RunWriter only needs render and output_space)."""

    from dgn.spaces import RGB01 as output_space

    def render(self, codes, boxes):
        return [c.new_full((3, 8, 8), 0.5) for c in codes]


def test_parts_merge_and_an_interrupted_sharded_run_resumes(tmp_path):
    from dgn.outputs import RunWriter

    config = {"targets": ["fc8:0-3"]}
    first = RunWriter(tmp_path, config, part="rank-0000")  # both ranks open the run before either writes
    second = RunWriter(tmp_path, config, part="rank-0001")
    first.write(_chunk([0]), _Flat())
    second.write(_chunk([1]), _Flat())
    # interrupted here: no manifest yet, two parts; a new run without --resume refuses
    with pytest.raises(DGNError, match="already holds a run"):
        RunWriter(tmp_path, config, part="rank-0000")
    with pytest.raises(DGNError, match="differs in targets"):
        RunWriter(tmp_path, {"targets": ["fc8:9"]}, resume=True)
    resumed = RunWriter(tmp_path, config, resume=True)  # resumed by a single process
    assert resumed.done_keys() == {r["key"] for r in first.rows + second.rows}
    resumed.write(_chunk([2]), _Flat())
    order = [r["key"] for r in second.rows + resumed.rows[-1:] + first.rows]
    manifest = resumed.finish(order=order)
    assert [r["key"] for r in manifest["rows"]] == order
    assert len(manifest["rows"]) == 3 and not (tmp_path / "parts").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["finished"]


@pytest.mark.parametrize("finished", [True, False])
def test_leave_world_destroys_the_group_so_no_rank_aborts_at_exit(tmp_path, finished):
    """A rank must not exit holding a live gloo group (the peer's threads abort the run)."""
    import torch.distributed as dist

    from dgn.distributed import leave_world

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    leave_world(finished)
    assert not dist.is_initialized()
    leave_world(finished)  # and a second call (or a run that never joined) is a no-op


def test_two_process_topk_equals_a_single_process_pass(tmp_path):
    """dgn topk's chunks go round 2 torchrun ranks and the merged examples equal one process's, crops included."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file

    rng = np.random.RandomState(0)
    for i in range(22):
        path = tmp_path / "imgs" / ("cat" if i % 2 else "dog") / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    run = ["topk", "--classifier", "cifar-caffenet", "--layers", "conv5,fc8", "--images", "imgs", "--k", "3",
           "--bottom", "1", "--sample", "8", "--batch-size", "4", "--device", "cpu"]
    single = _dgn([*run, "--out", "single"], tmp_path, [])
    assert single.returncode == 0, single.stderr
    sharded = _dgn([*run, "--out", "sharded"], tmp_path, TORCHRUN)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    one, two = (load_file(tmp_path / name / "examples.safetensors") for name in ("single", "sharded"))
    assert one.keys() == two.keys() and all(one[k].equal(two[k]) for k in one)
    index_one, index_two = (json.loads((tmp_path / name / "examples.json").read_text()) for name in ("single", "sharded"))
    assert index_two["config"].pop("ranks") == 2 and index_one["config"].pop("ranks") == 1
    assert index_one == index_two
    for crop in (tmp_path / "single" / "crops").rglob("*.png"):
        assert crop.read_bytes() == (tmp_path / "sharded" / crop.relative_to(tmp_path / "single")).read_bytes()
    assert not (tmp_path / "sharded" / "state").exists()
