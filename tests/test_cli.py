import json

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
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path, capsys, argv, message):
    code = main(["synthesize", "--random-weights", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "manifest.json").exists()


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
