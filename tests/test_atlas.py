"""The unit atlas: every unit's page and grid entry show what the runs and the examples hold, the build is atomic,
and the site works in a real browser (headless Chromium from the system packages; skipped without one)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgn.atlas import build_atlas, histogram_svg
from dgn.cli import main
from dgn.nets.toy import CIFAR_CLASSES
from tests.browser import Browser, find_chromium, find_firefox, firefox_screenshot

CLASSIFIER = ["--classifier", "cifar-caffenet", "--device", "cpu"]
MODELS = ["--generator", "cifar-deepsim-fc6", *CLASSIFIER]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A topk pass over 30 random images in the 10 CIFAR class folders, a synthesis run (fc8:0-1, conv5:2; two
    restarts), a pair run and an audit of the run: the inputs of an atlas."""
    base = tmp_path_factory.mktemp("atlas")
    images = base / "images"
    rng = np.random.RandomState(0)
    for i in range(30):
        path = images / CIFAR_CLASSES[i % 10] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    paths = {name: base / name for name in ("topk", "run", "pair", "audit")}
    assert main(["topk", *CLASSIFIER, "--layers", "conv5,fc8", "--images", str(images), "--k", "3", "--bottom", "1",
                 "--sample", "12", "--out", str(paths["topk"])]) == 0
    assert main(["synthesize", *MODELS, "--target", "fc8:0-1", "--target", "conv5:2", "--restarts", "2",
                 "--steps", "4", "--out", str(paths["run"])]) == 0
    assert main(["pair", *MODELS, "--target", "fc8:0", "--with", "fc8:1", "--restarts", "1", "--steps", "3",
                 "--out", str(paths["pair"])]) == 0
    assert main(["audit", "--synthetic", str(paths["run"]), "--train", str(images), "--classifier", "cifar-caffenet",
                 "--layers", "pixel,fc6", "--device", "cpu", "--out", str(paths["audit"])]) == 0
    return paths


@pytest.fixture(scope="module")
def site(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "atlas"
    summary = build_atlas(out, [world["run"]], world["topk"], [world["pair"]], [world["audit"]], page_size=20)
    return out, summary


def _layer_data(site_dir: Path, layer: str) -> dict:
    text = (site_dir / "layers" / f"{layer}.js").read_text()
    return json.loads(text[text.index("=") + 1 : text.rindex(";")])


def _bytes_of(page: Path, src: str) -> bytes:
    return (page.parent / src).resolve().read_bytes()


def test_every_unit_has_a_page_and_its_grid_entry_is_its_best_restart_or_top_example(world, site):
    out, summary = site
    assert summary["layers"] == 2 and summary["units"] == 64 + 10
    assert len(list((out / "units" / "conv5").glob("*.html"))) == 64 and len(list((out / "units/fc8").glob("*.html"))) == 10
    rows = json.loads((world["run"] / "manifest.json").read_text())["rows"]
    examples = json.loads((world["topk"] / "examples.json").read_text())
    fc8 = {entry["u"]: entry for entry in _layer_data(out, "fc8")["units"]}
    layer_page = out / "layers" / "fc8.html"
    for unit in (0, 1):
        best = max((r for r in rows if r["target"] == f"fc8:{unit}"), key=lambda r: r["act_end"])
        assert not fc8[unit]["real"] and fc8[unit]["act"] == round(best["act_end"], 3)
        assert _bytes_of(layer_page, fc8[unit]["img"]) == (world["run"] / best["image"]).read_bytes()
    top = examples["layers"]["fc8"]["units"][5]["top"][0]  # no run made unit 5: its best real image stands in
    assert fc8[5]["real"] and fc8[5]["act"] is None
    assert _bytes_of(layer_page, fc8[5]["img"]) == (Path(examples["root"]) / examples["images"][top["id"]]).read_bytes()
    labels = [examples["labels"][item["id"]] for item in examples["layers"]["fc8"]["units"][5]["top"]]
    assert set(fc8[5]["search"].split()) == set(labels)


def test_a_unit_page_shows_its_restarts_examples_histogram_pairs_and_audit(world, site):
    out, _ = site
    page = out / "units" / "fc8" / "0.html"
    html = page.read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    shown = {_bytes_of(page, src) for src in sources}
    rows = json.loads((world["run"] / "manifest.json").read_text())["rows"]
    for row in rows:
        if row["target"] == "fc8:0":
            assert (world["run"] / row["image"]).read_bytes() in shown
    examples = json.loads((world["topk"] / "examples.json").read_text())
    for item in examples["layers"]["fc8"]["units"][0]["top"] + examples["layers"]["fc8"]["units"][0]["bottom"]:
        assert (Path(examples["root"]) / examples["images"][item["id"]]).read_bytes() in shown
    assert html.count('stroke="#d62728"') == 2  # the two restarts marked on the histogram of real activations
    assert "Activations of 10 real images" in html  # a sample of at most 12 of 30 images: every 3rd
    assert 'href="../../units/fc8/1.html"' in html  # the pair partner's page
    pair_rows = [r for r in json.loads((world["pair"] / "manifest.json").read_text())["rows"] if "partner" in r]
    assert (world["pair"] / pair_rows[0]["image"]).read_bytes() in shown
    assert "Memorisation audit" in html and html.count("<li>restart") == 2
    conv_page = out / "units" / "conv5" / "2.html"  # a conv unit's examples are its receptive-field crops
    conv_shown = {_bytes_of(conv_page, src) for src in re.findall(r'<img src="([^"]+)"', conv_page.read_text())}
    for item in examples["layers"]["conv5"]["units"][2]["top"]:
        assert (world["topk"] / item["crop"]).read_bytes() in conv_shown


def test_histogram_counts_every_sample_and_marks_beyond_the_bars():
    sample = np.array([0.0, 1.0, 1.5, 2.0, 2.0, 3.0])
    svg = histogram_svg(sample, [(10.0, "synthetic")], bins=5)
    counts = [int(n) for n in re.findall(r": (\d+)</title></rect>", svg)]
    assert sum(counts) == len(sample) and len(counts) == 5
    mark_x = float(re.search(r'<line x1="([\d.]+)"[^>]*stroke="#d62728"', svg)[1])
    bar_right = max(float(x) + float(w) for x, w in re.findall(r'<rect x="([\d.]+)"[^>]*width="([\d.]+)"', svg))
    assert mark_x > bar_right  # 10 lies far right of every real activation


def test_a_rebuild_replaces_the_atlas_and_an_interrupted_one_leaves_it_whole(world, tmp_path):
    out = tmp_path / "atlas"
    build_atlas(out, [world["run"]], world["topk"], title="first")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def stop(n: int) -> None:
        calls.append(n)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atlas(out, [world["run"]], world["topk"], title="second", progress=stop)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["atlas"]  # no staging folder left behind
    build_atlas(out, [world["run"]], title="second")
    assert json.loads((out / "atlas.json").read_text())["title"] == "second" and not (out / "units" / "conv5" / "5.html").exists()


def test_cli_builds_and_refuses_bad_input_in_one_line(world, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["atlas", "--runs", str(world["run"]), "--topk", str(world["topk"]), "--out", str(out)]) == 0
    assert "atlas of 74 units in 2 layers" in capsys.readouterr().out
    other = tmp_path / "other-run"
    other.mkdir()
    manifest = json.loads((world["run"] / "manifest.json").read_text())
    manifest["config"]["classifier"]["name"] = "alexnet"
    (other / "manifest.json").write_text(json.dumps(manifest))
    cases = [(["--out", str(tmp_path / "a")], "needs --runs, --topk"),
             (["--runs", str(world["run"]), "--out", str(world["topk"])], "not empty and not an atlas"),
             (["--runs", str(other), "--topk", str(world["topk"]), "--out", str(tmp_path / "b")], "'alexnet'"),
             (["--pairs", str(world["run"]), "--runs", str(world["run"]), "--out", str(tmp_path / "c")], "no pair rows"),
             (["--runs", str(world["run"]), "--page-size", "0", "--out", str(tmp_path / "d")], "page size")]
    for argv, message in cases:
        assert main(["atlas", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


BROWSER = find_chromium()
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium); "
                                   "the atlas is checked in a real browser only where one is")


@needs_browser
def test_the_site_works_in_chromium_layer_grids_page_search_and_link_to_unit_pages(world, site):
    out, _ = site
    examples = json.loads((world["topk"] / "examples.json").read_text())
    with Browser(BROWSER) as browser:
        browser.load((out / "index.html").as_uri())
        widths = browser.evaluate(Browser.IMAGE_WIDTHS)
        assert widths and all(w > 0 for w in widths)  # the pairs picture and the audit montage
        layers = browser.evaluate("Array.from(document.querySelectorAll('td a')).map(a => a.href)")
        assert [Path(u).name for u in layers] == ["conv5.html", "fc8.html"]
        assert browser.errors() == []

        browser.load(layers[0])  # conv5: 64 units, 20 per page
        state = browser.evaluate("window.ATLAS_PAGE")
        assert state == {"page": 1, "pages": 4, "shown": 64}
        assert browser.evaluate("document.querySelectorAll('#grid a').length") == 20
        widths = browser.evaluate(Browser.IMAGE_WIDTHS)
        assert len(widths) == 20 and all(w > 0 for w in widths)
        browser.evaluate("document.getElementById('next').click()")
        browser.wait_for_condition("window.ATLAS_PAGE.page === 2")
        first = browser.evaluate("document.querySelector('#grid a div').textContent")
        assert first.startswith("20")
        browser.evaluate("var s = document.getElementById('search'); s.value = '7'; s.dispatchEvent(new Event('input'))")
        browser.wait_for_condition("window.ATLAS_PAGE.shown === 1")
        unit_links = browser.evaluate("Array.from(document.querySelectorAll('#grid a')).map(a => a.href)")
        assert [Path(u).name for u in unit_links] == ["7.html"]
        cls = examples["labels"][examples["layers"]["conv5"]["units"][3]["top"][0]["id"]]
        expected = sum(cls in {examples["labels"][it["id"]] for it in unit["top"]}
                       for unit in examples["layers"]["conv5"]["units"])
        browser.evaluate(f"var s = document.getElementById('search'); s.value = '{cls}'; "
                         "s.dispatchEvent(new Event('input'))")
        browser.wait_for_condition(f"window.ATLAS_PAGE.shown === {expected}")
        assert browser.errors() == []

        browser.load(unit_links[0])
        widths = browser.evaluate(Browser.IMAGE_WIDTHS)
        assert len(widths) >= 3 and all(w > 0 for w in widths)
        assert browser.evaluate("document.querySelectorAll('svg rect').length") > 0
        following = browser.evaluate("Array.from(document.querySelectorAll('nav a')).map(a => a.href)")
        assert [Path(u).name for u in following[-2:]] == ["6.html", "8.html"]
        browser.load(layers[1].replace("layers/fc8.html", "units/fc8/0.html"))
        widths = browser.evaluate(Browser.IMAGE_WIDTHS)
        assert all(w > 0 for w in widths) and browser.evaluate("document.querySelectorAll('svg line').length") >= 3
        assert browser.errors() == []


@needs_browser
def test_the_browser_check_sees_a_broken_image_and_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><img src="missing.png"><script>undefinedFunction()</script>')
    with Browser(BROWSER) as browser:
        browser.load(page.as_uri())
        assert browser.evaluate(Browser.IMAGE_WIDTHS) == [0]
        errors = browser.errors()
        assert any("undefinedFunction" in e for e in errors) and any("missing.png" in e for e in errors), errors


FIREFOX = find_firefox()


def _colourful(picture: Path) -> int:
    """Distinct strongly coloured pixel values: images bring thousands, text, links and placeholders few."""
    rgb = np.asarray(Image.open(picture).convert("RGB")).reshape(-1, 3).astype(int)
    strong = rgb[(rgb.max(1) - rgb.min(1)) > 40]
    return len(np.unique(strong, axis=0))


@pytest.mark.skipif(FIREFOX is None, reason="no Firefox installed (apt-get install firefox-esr); the atlas is "
                    "checked in Firefox only where it is")
def test_firefox_draws_the_layer_grid_with_its_images(world, site, tmp_path):
    out, _ = site
    # fc8's grid is drawn by the page's script: Firefox must run it and decode the images it names
    shown = firefox_screenshot(FIREFOX, (out / "layers" / "fc8.html").as_uri(), tmp_path / "fc8.png")
    unit = firefox_screenshot(FIREFOX, (out / "units" / "fc8" / "0.html").as_uri(), tmp_path / "unit.png")
    broken = tmp_path / "broken"  # the same site without its images: the negative control
    shutil.copytree(out, broken, ignore=shutil.ignore_patterns("img"))
    missing = firefox_screenshot(FIREFOX, (broken / "layers" / "fc8.html").as_uri(), tmp_path / "missing.png")
    without = _colourful(missing)  # the links' anti-aliased edges: a few hundred (299 when written)
    assert _colourful(shown) > 5 * without and _colourful(unit) > 5 * without, (without, _colourful(shown))
