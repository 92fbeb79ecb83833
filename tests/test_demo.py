import contextlib
import io
import json

import pytest

from dgn.cli import main
from dgn.models import load_classifier, load_generator
from dgn.weights import load_bounds


def test_the_shipped_cifar_world_loads():
    gen = load_generator("cifar-deepsim-fc6")
    clf = load_classifier("cifar-caffenet")
    assert gen.code_shape == (512,) and clf.space.size == (32, 32)
    bounds = load_bounds("cifar-fc6-bounds-3x")
    assert bounds.shape == (512,) and (bounds >= 0).all()


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One `dgn demo --quick` run, shared by the tests that only read what it wrote: (folder, stdout)."""
    out = tmp_path_factory.mktemp("quick") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_demo_quick_runs_offline_and_writes_a_gallery(quick_demo):
    out, printed = quick_demo
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["rows"]
    assert [r["target"] for r in rows] == [f"fc8:{i}" for i in range(10)]
    # 60 act_max steps through the shipped prior raise every output unit, on any CPU: from lr 2 none of 480
    # rows (48 seeds) ended below its start, the smallest gain was +2.7 (see dgn.demo.QUICK_LR)
    assert all(r["act_end"] > r["act_start"] for r in rows), [(r["act_start"], r["act_end"]) for r in rows]
    html = (out / "index.html").read_text()
    assert "montage.png" in html and html.count("<figure>") == 10
    assert "open" in printed


def test_demo_judge_uses_the_fixture_resnet(tmp_path, fixtures_dir):
    from dgn.demo import run_demo

    summary = run_demo(tmp_path / "d", quick=True, device="cpu",
                       weights_dir=str(fixtures_dir / "torch/resnet_cifar10"))
    assert summary["judge"] and summary["judge_accuracy"] is not None
    assert all("judge" in r for r in summary["rows"])


def test_demo_records_its_changes_from_the_paper_and_can_run_the_paper_settings(tmp_path, quick_demo):
    from dgn.demo import BOUNDS, PAPER_BOUNDS, QUICK_LR

    def config(folder):
        return json.loads((folder / "manifest.json").read_text())["config"]

    demo = config(quick_demo[0])
    assert demo["bounds"] == BOUNDS != PAPER_BOUNDS
    assert demo["settings"]["jitter"] > 0 and demo["settings"]["flip"]
    assert demo["settings"]["lr_start"] == QUICK_LR and "lr 2.0" in demo["changed_from_paper"]["steps"]
    assert demo["changed_from_paper"] and "changed_from_paper" in (quick_demo[0] / "index.html").read_text()
    assert main(["demo", "--quick", "--paper", "--device", "cpu", "--out", str(tmp_path / "paper")]) == 0
    paper = config(tmp_path / "paper")
    assert paper["bounds"] == PAPER_BOUNDS and paper["settings"]["lr_start"] == 8.0 and paper["changed_from_paper"] == {}
    assert paper["settings"]["jitter"] == 0 and not paper["settings"]["flip"] and paper["settings"]["scale_jitter"] == 0
    # the demo's 1-sigma box is tighter than the 3-sigma one everywhere
    assert (load_bounds(BOUNDS) <= load_bounds(PAPER_BOUNDS)).all()


def test_demo_runs_bf16_only_on_a_cpu_with_amx(monkeypatch, quick_demo):
    from dgn import throughput
    from dgn.demo import demo_precision

    zen3 = throughput.cpu_peak("flags\t: avx2 fma\n", capability="AVX2", cores=2)
    sapphire = throughput.cpu_peak("flags\t: avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n", capability="AVX512",
                                   cores=2)
    cooper = throughput.cpu_peak("flags\t: avx2 fma avx512f avx512_bf16\n", capability="AVX512", cores=2)
    for peak, expected in ((zen3, "fp32"), (sapphire, "bf16"), (cooper, "fp32")):
        monkeypatch.setattr(throughput, "cpu_peak", lambda peak=peak: peak)
        assert demo_precision("cpu") == expected
    monkeypatch.undo()
    out, printed = quick_demo
    ran = json.loads((out / "manifest.json").read_text())["config"]["settings"]["precision"]
    assert ran == demo_precision("cpu") and f"s ({ran}); open" in printed


def test_demo_plan_steps():
    from dgn.demo import DEMO_STEPS, HIDDEN_TARGETS, plan

    targets, restarts, steps = plan(False, 4, None)
    assert len(targets) == 10 + len(HIDDEN_TARGETS) and restarts == 4 and steps == DEMO_STEPS == 400
    assert plan(False, 4, None, paper=True)[2] == 200 and plan(False, 2, 50)[1:] == (2, 50)
    assert plan(True, 4, None) == ([f"fc8:{i}" for i in range(10)], 1, 60)


def test_demo_builds_a_small_atlas_with_examples_when_cifar_images_are_at_hand(quick_demo):
    from dgn.demo import _FIXTURE_CIFAR, ATLAS_IMAGES
    from dgn.nets.toy import CIFAR_CLASSES

    out, printed = quick_demo
    record = json.loads((out / "atlas" / "atlas.json").read_text())
    text = (out / "atlas" / "layers" / "fc8.js").read_text()
    fc8 = json.loads(text[text.index("=") + 1 : text.rindex(";")])["units"]
    assert [u["u"] for u in fc8] == list(range(10)) and all(u["act"] is not None and not u["real"] for u in fc8)
    assert "atlas of" in printed
    if _FIXTURE_CIFAR.is_file():  # the shared fixtures' CIFAR-10 JPEGs: examples of conv5, fc6 and fc8
        index = json.loads((out / "examples" / "examples.json").read_text())
        assert len(index["images"]) == ATLAS_IMAGES and record["units"] == 64 + 512 + 10
        # the output units' top real images come mostly from their own class
        hits = [sum(index["labels"][it["id"]] == name for it in index["layers"]["fc8"]["units"][c]["top"])
                for c, name in enumerate(CIFAR_CLASSES)]
        assert sum(hits) >= 0.6 * 9 * 10, hits
    else:
        assert record["topk"] is None and record["units"] == 10
