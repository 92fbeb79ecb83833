import argparse
import json
from pathlib import Path

import pytest

from dgn.cli import main


def test_synthesize_writes_images_montage_and_manifest(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["synthesize", "--random-weights", "--target", "fc8:1-2", "--target", "conv5:3",
                 "--steps", "3", "--batch-size", "4", "--device", "cpu", "--out", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["target"] for r in manifest["rows"]] == ["fc8:1", "fc8:2", "conv5:3"]
    assert manifest["config"]["settings"]["steps"] == 3
    assert manifest["config"]["generator"]["weights_sha256"] == "random:0"
    assert len(list((out / "images").glob("*.png"))) == 6
    assert "wrote 3 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--target", "fc9:1"], "unknown layer 'fc9'; closest: fc8"),
        (["--target", "fc8:1000"], "valid units are 0..999"),
        (["--target", "fc8"], "expected LAYER:UNIT"),
        (["--target", "conv5:1@13,0"], "valid y 0..12"),
        (["--target", "fc8:1", "--generator", "biggan"], "valid: deepsim-fc6"),
        (["--target", "fc8:1", "--classifier", "vgg19"], "valid: caffenet"),
        (["--target", "fc8:1", "--device", "tpu"], "unknown device"),
        (["--target", "fc8:1", "--bounds", "/nonexistent/bounds.txt"], "--bounds"),
        (["--target", "fc8:1", "--steps", "0"], "steps must be >= 1"),
        (["--target", "fc8:1", "--batch-size", "0"], "must be a positive integer or 'auto'"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path, capsys, argv, message):
    code = main(["synthesize", "--random-weights", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_batch_size_auto_falls_back_to_the_cpu_default(tmp_path, capsys):
    code = main(["synthesize", "--generator", "cifar-deepsim-fc6", "--classifier", "cifar-caffenet",
                 "--target", "fc8:1", "--target", "conv2:3", "--steps", "2", "--batch-size", "auto",
                 "--device", "cpu", "--out", str(tmp_path / "run")])
    assert code == 0
    assert "--batch-size auto: 16 rows per chunk" in capsys.readouterr().out


def test_missing_required_option(capsys):
    assert main(["synthesize", "--random-weights"]) == 2
    assert "required" in capsys.readouterr().err


def test_layers_lists_names_and_shapes(capsys):
    assert main(["layers", "caffenet"]) == 0
    out = capsys.readouterr().out
    assert "conv5" in out and "256x13x13" in out and "fc8" in out


def test_layers_shows_aliases_of_torchvision_models(capsys):
    assert main(["layers", "alexnet"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("features.10 "))
    assert "conv5" in line and "256x13x13" in line


def test_weights_list_names_entries_and_the_licence(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DGN_CACHE", str(tmp_path))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "deepsim-fc6" in out and "resnet20-cifar10" in out and "non-commercial" in out.lower()
    assert main(["weights", "path", "deepsim-fc6"]) == 2
    assert "dgn weights download deepsim-fc6" in capsys.readouterr().err


def test_weights_download_from_a_local_directory(capsys, monkeypatch, tmp_path, fixtures_dir):
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DGN_OFFLINE", "1")
    local = tmp_path / "copied"
    local.mkdir()
    (local / "fc6.txt").write_bytes((fixtures_dir / "dgn_am_upstream/act_range/3x/fc6.txt").read_bytes())
    assert main(["weights", "download", "bounds-fc6-3x", "--weights-dir", str(local)]) == 0
    stored = capsys.readouterr().out.strip()
    assert stored.endswith("bounds-fc6-3x.txt")
    assert main(["weights", "path", "bounds-fc6-3x"]) == 0


def test_convert_inspect_and_generic_caffe_model(tmp_path, capsys, fixtures_dir):
    lenet = fixtures_dir / "caffe/lenet_mnist"
    assert main(["convert", "caffe", "--inspect", str(lenet / "lenet_iter_10000.caffemodel")]) == 0
    assert "(500, 800)" in capsys.readouterr().out
    out = tmp_path / "lenet.safetensors"
    assert main(["convert", "caffe", "--caffemodel", str(lenet / "lenet_iter_10000.caffemodel"),
                 "--prototxt", str(lenet / "lenet.prototxt"), "--arch", "generic", "--out", str(out)]) == 0
    from safetensors.torch import load_file

    assert load_file(out)["ip1.weight"].shape == (500, 800)


def test_convert_into_the_wrong_architecture_names_the_layer(tmp_path, capsys, fixtures_dir):
    lenet = fixtures_dir / "caffe/lenet_mnist/lenet_iter_10000.caffemodel"
    out = tmp_path / "x.safetensors"
    assert main(["convert", "caffe", "--caffemodel", str(lenet), "--arch", "caffenet", "--out", str(out)]) == 2
    assert "conv1" in capsys.readouterr().err
    assert not out.exists()


def test_bounds_from_a_folder_of_images(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from dgn.weights import load_bounds_file

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    out = tmp_path / "fc6.txt"
    assert main(["bounds", "--random-weights", "--classifier", "caffenet", "--layer", "fc6",
                 "--images", str(tmp_path / "imgs"), "--device", "cpu", "--out", str(out)]) == 0
    bounds = load_bounds_file(out, 4096)
    assert (bounds >= 0).all() and bounds.max() > 0 and bool((bounds == bounds.round()).all())
    assert "from 6 images" in capsys.readouterr().out


def test_pair_writes_a_grid_and_both_activations(tmp_path, capsys):
    out = tmp_path / "pairs"
    assert main(["pair", "--random-weights", "--target", "fc8:1", "--with", "fc8:2", "--with", "fc8:3",
                 "--steps", "3", "--balance-width", "2", "--device", "cpu", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["settings"]["pair_smoothing"] == 2.0
    rows = manifest["rows"]
    pairs = [r for r in rows if "partner" in r]
    assert [r["target"] for r in pairs] == ["fc8:1+fc8:2", "fc8:1+fc8:3"]
    assert all({"act_a", "act_b", "single_a", "single_b"} <= set(r) for r in pairs)
    assert (out / "pairs.png").is_file()
    assert main(["pair", "--random-weights", "--target", "fc8:1", "--out", str(tmp_path / "x")]) == 2
    assert "--with" in capsys.readouterr().err


# Every command that writes, with its other required arguments (never read: the output is checked first).
WRITERS = {
    "demo": ["demo"],
    "synthesize": ["synthesize", "--random-weights", "--target", "fc8:1"],
    "pair": ["pair", "--random-weights", "--target", "fc8:1", "--with", "fc8:2"],
    "baseline": ["baseline", "--random-weights", "--target", "fc8:1"],
    "evolve": ["evolve", "--random-weights", "--target", "fc8:1", "--evaluations", "40"],
    "audit": ["audit", "--synthetic", "run", "--train", "train", "--classifier", "cifar-caffenet"],
    "video": ["video", "--class", "0"],
    "bounds": ["bounds", "--classifier", "cifar-caffenet", "--layer", "fc6", "--images", "imgs"],
    "topk": ["topk", "--classifier", "cifar-caffenet", "--layers", "fc8", "--images", "imgs"],
    "atlas": ["atlas", "--runs", "run"],
    "convert": ["convert", "caffe", "--caffemodel", "m.caffemodel", "--arch", "caffenet"],
    "inspect activations": ["inspect", "activations", "--image", "a.png"],
    "inspect filters": ["inspect", "filters"],
    "inspect attribution": ["inspect", "attribution", "--image", "a.png", "--target", "fc8:1"],
    "inspect occlusion": ["inspect", "occlusion", "--image", "a.png"],
    "inspect invariance": ["inspect", "invariance", "--images", "imgs"],
    "inspect neighbours": ["inspect", "neighbours", "--images", "imgs", "--query", "q.png"],
    "inspect embedding": ["inspect", "embedding", "--images", "imgs"],
    "inspect mixture": ["inspect", "mixture", "--images", "imgs"],
    "inspect evolution": ["inspect", "evolution", "--checkpoints", "ckpts", "--target", "fc8:1"],
}


@pytest.mark.parametrize("command", WRITERS)
def test_an_output_that_cannot_be_written_is_one_line_exit_2(tmp_path, capsys, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, message in [("/dev/null/x", "/dev/null is not a folder"), (str(a_file / "sub"), "is not a folder")]:
        assert main([*WRITERS[command], "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    if command not in ("bounds", "convert"):  # a folder is asked for: an existing file is refused
        assert main([*WRITERS[command], "--out", str(a_file)]) == 2
        assert "exists and is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_every_command_that_writes_is_covered():
    from dgn.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    inspect = next(a for a in sub.choices["inspect"]._actions if isinstance(a, argparse._SubParsersAction))
    def writes(p):
        return any(a.dest == "out" for a in p._actions)

    found = {name for name, p in sub.choices.items() if writes(p)}
    found |= {f"inspect {verb}" for verb, p in inspect.choices.items() if writes(p)}
    assert found == set(WRITERS)


def test_an_os_error_mid_run_is_one_line(monkeypatch, capsys):
    import dgn.cli.layers

    def fail(args):
        raise OSError(28, "No space left on device", "/full/disk/run/manifest.json")

    monkeypatch.setattr(dgn.cli.layers, "run", fail)
    assert main(["layers", "cifar-caffenet"]) == 2
    assert capsys.readouterr().err == "dgn: error: /full/disk/run/manifest.json: No space left on device\n"


def _picture(path, seed=0):
    import numpy as np
    from PIL import Image

    Image.fromarray((np.random.default_rng(seed).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


CIFAR_WORLD = ["--generator", "cifar-deepsim-fc6", "--classifier", "cifar-caffenet", "--device", "cpu"]


@pytest.mark.parametrize("mode", ["encode", "invert"])
def test_synthesize_starts_from_a_real_image(tmp_path, capsys, mode):
    image = _picture(tmp_path / "start.png")
    out = tmp_path / "run"
    code = main(["synthesize", *CIFAR_WORLD, "--target", "fc8:1", "--restarts", "2", "--steps", "2",
                 "--init-image", image, "--init-mode", mode, "--invert-steps", "3", "--out", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    start = manifest["config"]["start"]
    assert start["mode"] == mode and start["images"] == [image] and len(start["reconstruction_rmse"]) == 1
    assert start.get("encoder") == ("cifar-caffenet:fc6" if mode == "encode" else None)
    first, second = manifest["rows"]
    assert first["act_start"] == second["act_start"]  # both restarts start from the image, not from their seeds
    assert f"by {mode}; RMS error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--init-image", "A", "--init-image", "A"], "2 starts for 3 rows"),
        (["--init-image", "/nonexistent/ship.png"], "start image /nonexistent/ship.png does not exist"),
        (["--init-image", "A", "--init-mode", "guess"], "invalid choice: 'guess'"),
        (["--init-image", "A", "--init-mode", "invert", "--invert-steps", "0"], "inversion steps must be >= 1"),
    ],
)
def test_bad_start_images_are_one_line_errors(tmp_path, capsys, extra, message):
    image = _picture(tmp_path / "start.png")
    extra = [image if a == "A" else a for a in extra]
    code = main(["synthesize", *CIFAR_WORLD, "--target", "fc8:0-2", "--steps", "2", *extra,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_video_starts_every_frame_from_one_image(tmp_path):
    image = _picture(tmp_path / "start.png")
    out = tmp_path / "video"
    code = main(["video", "--class", "0", "--frames", "4", "--steps", "2", "--device", "cpu", "--init-image", image,
                 "--out", str(out)])
    assert code == 0
    start = json.loads((out / "manifest.json").read_text())["start"]
    assert start["mode"] == "encode" and len(start["reconstruction_rmse"]) == 1
    assert main(["video", "--class", "0", "--frames", "4", "--steps", "2", "--device", "cpu", "--init-image", image,
                 "--init-image", image, "--out", str(tmp_path / "v2")]) == 2


def test_channel_layer_and_direction_targets_from_the_command_line(tmp_path):
    (tmp_path / "v.txt").write_text(" ".join(str(i % 3 - 1) for i in range(64)))  # cifar-caffenet conv2: 64 channels
    targets = ["conv2:3@mean", "conv2:layer", f"conv2:dir={tmp_path}/v.txt@mean"]
    for command in (["synthesize"], ["baseline", "--preset", "simonyan"]):
        out = tmp_path / command[0]
        extra = CIFAR_WORLD if command == ["synthesize"] else CIFAR_WORLD[2:]
        argv = [*command, *extra, *[a for t in targets for a in ("--target", t)], "--steps", "4", "--out", str(out)]
        assert main(argv) == 0
        rows = json.loads((out / "manifest.json").read_text())["rows"]
        assert [r.get("kind") for r in rows] == ["channel", "layer", "direction"]
        if command == ["synthesize"]:  # (simonyan's decay outweighs a 4-step ascent of a whole channel)
            assert all(r["act_best"] > r["act_start"] for r in rows)


def test_diversity_from_the_command_line_and_its_errors(tmp_path, capsys):
    out = tmp_path / "div"
    assert main(["synthesize", *CIFAR_WORLD, "--target", "fc8:1", "--restarts", "2", "--batch-size", "1",
                 "--diversity", "2", "--diversity-layer", "conv5", "--steps", "3", "--out", str(out)]) == 0
    config = json.loads((out / "manifest.json").read_text())["config"]["settings"]
    assert (config["diversity"], config["diversity_layer"]) == (2.0, "conv5")
    assert main(["baseline", *CIFAR_WORLD[2:], "--preset", "simonyan", "--target", "fc8:1", "--restarts", "2",
                 "--diversity", "2", "--steps", "3", "--out", str(tmp_path / "pixels")]) == 0
    assert json.loads((tmp_path / "pixels" / "manifest.json").read_text())["config"]["settings"]["diversity"] == 2.0
    assert main(["synthesize", *CIFAR_WORLD, "--target", "fc8:1", "--diversity", "-1", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "diversity must be a finite number >= 0" in capsys.readouterr().err


def test_baseline_accentuates_a_real_image(tmp_path, capsys):
    image = _picture(tmp_path / "real.png")
    out = tmp_path / "acc"
    assert main(["baseline", *CIFAR_WORLD[2:], "--preset", "accentuate", "--target", "fc8:3", "--steps", "5",
                 "--init-image", image, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["start"] == {"images": [image]}
    assert manifest["config"]["settings"]["anchor_layer"] == "conv2"
    capsys.readouterr()
    assert main(["baseline", *CIFAR_WORLD[2:], "--preset", "accentuate", "--target", "fc8:3",
                 "--out", str(tmp_path / "none")]) == 2
    assert "give it with --init-image" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_baseline_writes_maco_attribution_maps_on_request(tmp_path):
    from PIL import Image

    out = tmp_path / "maco"
    assert main(["baseline", *CIFAR_WORLD[2:], "--preset", "maco", "--target", "fc8:3", "--target", "conv3:5",
                 "--steps", "4", "--attribution", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "attribution" in manifest["config"]
    for row in manifest["rows"]:
        image = Image.open(out / row["image"])
        slug = Path(row["image"]).stem
        rgba = Image.open(out / "attribution" / f"{slug}_rgba.png")
        assert rgba.mode == "RGBA" and rgba.size == image.size  # cropped like the row's image
        assert Image.open(out / "attribution" / f"{slug}.png").size == image.size
