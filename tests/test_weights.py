"""The weights registry and downloads, all against local files (the network is blocked here)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dgn import weights
from dgn.errors import DGNError

HF_REPO = "binxu/DeePSim_DosovitskiyBrox2016"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, no override dirs, online mode, and no real network access."""
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("DGN_WEIGHTS_DIR", "DGN_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    return tmp_path / "cache"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_files(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _serve(monkeypatch, payload: bytes, seen: list):
    def fake_urlopen(request, timeout=None):
        seen.append(request.full_url if isinstance(request, urllib.request.Request) else request)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)


def _fake_hf(monkeypatch, file, calls: list):
    def fake_hf_hub_download(**kwargs):
        calls.append(kwargs)
        return str(file)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_hf_hub_download)


# ----- registry ---------------------------------------------------------------------------------------
def test_registry_entries():
    reg = weights.registry()
    expected = {
        "deepsim-fc6", "deepsim-fc7", "deepsim-fc8", "deepsim-pool5", "caffenet",
        "alexnet", "vgg16", "googlenet", "resnet50", "resnet20-cifar10", "bounds-fc6-3x",
    }  # fmt: skip
    assert expected <= set(reg)
    fc6 = reg["deepsim-fc6"]
    assert (fc6.kind, fc6.architecture) == ("generator", "deepsim-fc6")
    assert fc6.source.repo == HF_REPO and fc6.source.filename == "upconvGAN_fc6.pt" and fc6.source.revision
    assert fc6.default_bounds == "bounds-fc6-3x" and reg["bounds-fc6-3x"].kind == "bounds"
    assert "non-commercial" in fc6.licence.lower() and "MIT" in fc6.licence
    assert fc6.url == f"https://huggingface.co/{HF_REPO}/resolve/main/upconvGAN_fc6.pt"
    assert reg["bounds-fc6-3x"].code_size == 4096
    assert "d1ea1080" in reg["resnet20-cifar10"].url and "eb7f2e7c" in reg["bounds-fc6-3x"].url
    for entry in reg.values():
        assert entry.card and entry.licence
        with pytest.raises(AttributeError):
            entry.name = "changed"  # frozen


def test_registry_checksums_are_those_of_the_real_files(fixtures_dir):
    reg = weights.registry()
    resnet = fixtures_dir / "torch" / "resnet_cifar10" / "resnet20-12fca82f.th"
    bounds = fixtures_dir / "dgn_am_upstream" / "act_range" / "3x" / "fc6.txt"
    assert (
        reg["resnet20-cifar10"].sha256 == _sha(resnet)
        and reg["resnet20-cifar10"].size == resnet.stat().st_size
    )
    assert reg["bounds-fc6-3x"].sha256 == _sha(bounds) and reg["bounds-fc6-3x"].size == bounds.stat().st_size


def test_torchvision_entries_name_torchvisions_real_files():
    for name in ("alexnet", "vgg16", "googlenet", "resnet50"):
        entry = weights.get_entry(name)
        assert entry.source.type == "torchvision"
        assert entry.url.startswith("https://download.pytorch.org/models/")
        assert entry.url.rsplit("/", 1)[1] == entry.file


def test_every_model_architecture_has_a_registry_entry():
    from dgn import models

    reg = weights.registry()
    for name, arch in models.ARCHITECTURES.items():
        assert name in reg and reg[name].kind == arch.kind, name


def test_the_architectures_are_the_one_source_of_spaces_and_shapes():
    """A model entry names its architecture; its pixel space and code shape come from there alone, and a
    generator's default bounds have one value per code unit."""
    import math

    from dgn import models

    reg = weights.registry()
    for entry in reg.values():
        if entry.kind == "bounds":
            continue
        arch = models.ARCHITECTURES[entry.architecture]
        assert arch.kind == entry.kind, entry.name
        if entry.default_bounds is not None:
            assert reg[entry.default_bounds].code_size == math.prod(arch.code_shape), entry.name
    assert models.ARCHITECTURES["deepsim-pool5"].code_shape == (256, 6, 6)
    assert models.ARCHITECTURES["resnet20-cifar10"].space.name == "cifar10-resnet"
    assert models.ARCHITECTURES["alexnet"].space.name == "torchvision-imagenet"


def test_unknown_name_lists_closest_and_all():
    with pytest.raises(DGNError) as err:
        weights.get_entry("deepsim-fc66")
    message = str(err.value)
    assert "did you mean deepsim-fc6" in message
    for name in weights.names():
        assert name in message


def test_parse_registry_validates():
    good = {"name": "g", "kind": "generator", "architecture": "deepsim-fc6", "file": "f.pt", "licence": "l",
            "card": "c", "source": {"type": "url", "url": "https://example.org/f.pt"}}  # fmt: skip
    assert set(weights.parse_registry({"entries": [good]})) == {"g"}
    with pytest.raises(DGNError, match="duplicate"):
        weights.parse_registry({"entries": [good, good]})
    with pytest.raises(DGNError, match="sha256"):
        weights.parse_registry({"entries": [{**good, "sha256": "abc"}]})
    with pytest.raises(DGNError, match="default_bounds"):
        weights.parse_registry({"entries": [{**good, "default_bounds": "g"}]})
    with pytest.raises(DGNError, match="source type"):
        weights.parse_registry({"entries": [{**good, "source": {"type": "ftp"}}]})
    with pytest.raises(DGNError, match="pixel_space.*is their one source"):
        weights.parse_registry({"entries": [{**good, "pixel_space": "caffe-bgr-imagenet"}]})


def test_cache_and_override_dirs(tmp_path, monkeypatch):
    assert weights.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DGN_CACHE")
    monkeypatch.setattr(weights, "CHECKOUT_PRETRAINED", tmp_path / "not-a-checkout" / "pretrained")
    assert weights.cache_dir() == weights.Path.home() / ".cache" / "dgn"
    assert weights.weights_dirs() == []
    monkeypatch.setenv("DGN_WEIGHTS_DIR", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert weights.weights_dirs(tmp_path / "x") == [tmp_path / "x", tmp_path / "a", tmp_path / "b"]


# ----- Hugging Face path ---------------------------------------------------------------------------
def test_hf_download_converts_records_sha_and_caches(tmp_path, monkeypatch, isolated):
    original = {
        "defc7.1.weight": torch.randn(8, 4),
        "defc7.1.bias": torch.randn(8),
        "deconv0.weight": torch.randn(2, 3),
    }
    file = tmp_path / "hf" / "upconvGAN_fc6.pt"
    file.parent.mkdir()
    torch.save(original, file)
    calls: list = []
    _fake_hf(monkeypatch, file, calls)

    stored = weights.download("deepsim-fc6")
    assert stored == isolated / "deepsim-fc6.safetensors"
    assert calls[0]["repo_id"] == HF_REPO and calls[0]["filename"] == "upconvGAN_fc6.pt"
    assert calls[0]["revision"] == weights.get_entry("deepsim-fc6").source.revision
    assert calls[0]["local_files_only"] is False
    state = weights.load_state_dict("deepsim-fc6")
    # the old "defc7.1.weight" naming is fixed; other keys untouched
    assert set(state) == {"defc7.weight", "defc7.bias", "deconv0.weight"}
    assert torch.equal(state["defc7.weight"], original["defc7.1.weight"])
    # no registry checksum: the computed one is recorded and reported
    assert weights.recorded_sha256("deepsim-fc6") == _sha(file)
    with safe_open(str(stored), "pt") as fh:
        assert fh.metadata()["source_sha256"] == _sha(file)
    row = next(r for r in weights.describe() if r["name"] == "deepsim-fc6")
    assert (
        row["cached"] and row["sha256"] == _sha(file) and row["sha256_from"] == "recorded on first download"
    )
    assert weights.path("deepsim-fc6") == stored

    assert weights.download("deepsim-fc6") == stored and len(calls) == 1  # served from the cache

    # a different upstream file later fails against the recorded checksum and changes nothing
    torch.save({"defc7.weight": torch.zeros(1)}, file)
    before = stored.read_bytes()
    with pytest.raises(DGNError, match="checksum mismatch") as err:
        weights.download("deepsim-fc6", force=True)
    assert calls[-1]["force_download"] is True
    assert _sha(file) in str(err.value) and stored.read_bytes() == before


def test_hf_offline_missing_message(monkeypatch, isolated):
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls: list = []

    def offline_hf(**kwargs):
        calls.append(kwargs)
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache\nmore detail")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline_hf)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DGNError) as err:
        weights.download("deepsim-fc7")
    message = str(err.value)
    assert calls[0]["local_files_only"] is True
    assert "\n" not in message
    assert "upconvGAN_fc7.pt" in message and f"huggingface.co/{HF_REPO}" in message
    assert str(isolated) in message and "--weights-dir" in message
    assert _cache_files(isolated) == []


# ----- plain URL path ------------------------------------------------------------------------------
def test_url_download_of_bounds(fixtures_dir, monkeypatch, isolated):
    payload = (fixtures_dir / "dgn_am_upstream" / "act_range" / "3x" / "fc6.txt").read_bytes()
    seen: list = []
    _serve(monkeypatch, payload, seen)
    stored = weights.download("bounds-fc6-3x")
    assert seen == [weights.get_entry("bounds-fc6-3x").url]
    assert stored == isolated / "bounds-fc6-3x.txt" and stored.read_bytes() == payload
    bounds = weights.load_bounds("bounds-fc6-3x")
    assert bounds.shape == (4096,) and bounds.min() == 3 and bounds.max() == 17
    assert abs(bounds.mean().item() - 11.85) < 0.01
    assert json.loads((isolated / "bounds-fc6-3x.json").read_text())["checked_against_registry"] is True
    assert not [n for n in _cache_files(isolated) if n.endswith(".tmp")]


def test_sha_mismatch_leaves_nothing_in_cache(fixtures_dir, monkeypatch, isolated):
    payload = (fixtures_dir / "dgn_am_upstream" / "act_range" / "3x" / "fc6.txt").read_bytes()
    tampered = payload.replace(b"17", b"99", 1)
    _serve(monkeypatch, tampered, [])
    with pytest.raises(DGNError) as err:
        weights.download("bounds-fc6-3x")
    message = str(err.value)
    assert "fc6.txt" in message
    assert weights.get_entry("bounds-fc6-3x").sha256 in message
    assert hashlib.sha256(tampered).hexdigest() in message
    assert _cache_files(isolated) == []


def test_network_failure_and_offline_messages(monkeypatch, isolated):
    def refused(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    with pytest.raises(DGNError, match="download failed") as err:
        weights.download("resnet20-cifar10")
    assert "resnet20-12fca82f.th" in str(err.value) and _cache_files(isolated) == []

    monkeypatch.setenv("DGN_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used while offline"))
    with pytest.raises(DGNError) as err:
        weights.download("resnet20-cifar10")
    message = str(err.value)
    assert "\n" not in message and "offline" in message
    assert "resnet20-12fca82f.th" in message and weights.get_entry("resnet20-cifar10").url in message
    assert str(isolated) in message and "$DGN_WEIGHTS_DIR" in message
    with pytest.raises(DGNError, match="not found locally"):
        weights.load_state_dict("resnet20-cifar10", fetch=False)


# ----- local override directories --------------------------------------------------------------------
def test_override_dir_original_file_is_used_offline(fixtures_dir, tmp_path, monkeypatch, isolated):
    monkeypatch.setenv("DGN_OFFLINE", "1")
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    shutil.copy(fixtures_dir / "torch" / "resnet_cifar10" / "resnet20-12fca82f.th", by_hand)
    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(by_hand))
    state = weights.load_state_dict("resnet20-cifar10")
    assert "conv1.weight" in state and "linear.bias" in state
    assert not any(k.startswith("module.") for k in state)
    assert state["layer1.0.bn1.num_batches_tracked"].dtype == torch.long  # added: the file predates it
    assert (isolated / "resnet20-cifar10.safetensors").is_file()


def test_override_dir_converted_file_wins(tmp_path, monkeypatch, isolated):
    converted = tmp_path / "mine"
    converted.mkdir()
    save_file({"conv1.weight": torch.ones(2, 2)}, str(converted / "caffenet.safetensors"))
    assert weights.path("caffenet") is None
    assert weights.path("caffenet", weights_dir=converted) == converted / "caffenet.safetensors"
    state = weights.load_state_dict("caffenet", weights_dir=converted)
    assert torch.equal(state["conv1.weight"], torch.ones(2, 2))
    assert _cache_files(isolated) == []


# ----- torchvision path ------------------------------------------------------------------------------
def test_torchvision_url_and_hash_prefix(tmp_path, monkeypatch, isolated):
    blob = io.BytesIO()
    torch.save({"features.0.weight": torch.randn(3, 3), "aux1.fc.weight": torch.randn(2)}, blob)
    payload = blob.getvalue()
    seen: list = []
    _serve(monkeypatch, payload, seen)
    # the real entry: torchvision's URL is used, and the hash in its file name is checked
    with pytest.raises(DGNError, match="expected a sha256 starting 7be5be79"):
        weights.download("alexnet")
    assert seen == ["https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"]
    assert _cache_files(isolated) == []

    # an entry whose file-name hash does match: converted (GoogLeNet's aux classifiers dropped)
    real = weights.get_entry("googlenet")
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    fake = weights.WeightsEntry(**{**real.__dict__, "name": "tiny-tv", "file": f"tiny-{prefix}.pth"})
    monkeypatch.setattr(weights, "_registry_cached", lambda: {"tiny-tv": fake})
    state = weights.load_state_dict("tiny-tv")
    assert set(state) == {"features.0.weight"}
    assert seen[-1] == "https://download.pytorch.org/models/googlenet-1378be20.pth"


def test_torch_hub_cache_is_reused(tmp_path, monkeypatch, isolated):
    blob = io.BytesIO()
    torch.save({"fc.weight": torch.randn(2, 2)}, blob)
    prefix = hashlib.sha256(blob.getvalue()).hexdigest()[:8]
    fake = weights.WeightsEntry(
        **{**weights.get_entry("resnet50").__dict__, "name": "hub-tv", "file": f"r-{prefix}.pth"}
    )
    monkeypatch.setattr(weights, "_registry_cached", lambda: {"hub-tv": fake})
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / fake.file).write_bytes(blob.getvalue())
    monkeypatch.setenv("DGN_OFFLINE", "1")
    assert set(weights.load_state_dict("hub-tv")) == {"fc.weight"}


# ----- safety ------------------------------------------------------------------------------------------
EXECUTED: list = []


def _side_effect():
    EXECUTED.append(True)
    return {}


class Payload:
    def __reduce__(self):
        return (_side_effect, ())


def test_pickled_code_is_never_executed(tmp_path, isolated):
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    torch.save(
        {"state_dict": {"defc7.weight": torch.zeros(2)}, "extra": Payload()}, by_hand / "upconvGAN_fc6.pt"
    )
    EXECUTED.clear()
    with pytest.raises(
        DGNError, match="refusing to load .*upconvGAN_fc6.pt.*Unsupported global.*weights_only=True"
    ) as err:
        weights.download("deepsim-fc6", weights_dir=by_hand)
    assert "\n" not in str(err.value)
    assert EXECUTED == []
    assert (
        not (isolated / "deepsim-fc6.safetensors").exists() and not (isolated / "deepsim-fc6.json").exists()
    )


def test_read_checkpoint_rejects_non_tensors(tmp_path):
    torch.save({"w": torch.zeros(1), "epoch": 3}, tmp_path / "c.pt")
    with pytest.raises(DGNError, match="'epoch' is a int"):
        weights.read_checkpoint(tmp_path / "c.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(DGNError, match="cannot read checkpoint"):
        weights.read_checkpoint(tmp_path / "junk.pt")


def test_kind_mismatches(isolated):
    with pytest.raises(DGNError, match="bounds file, not a state_dict"):
        weights.load_state_dict("bounds-fc6-3x")
    with pytest.raises(DGNError, match="not a bounds file"):
        weights.load_bounds("deepsim-fc6")


# ----- DeePSim layout round trip (real shapes) --------------------------------------------------------
DEEPSIM_FC6_SHAPES = {
    "defc7.weight": (4096, 4096), "defc7.bias": (4096,),
    "defc6.weight": (4096, 4096), "defc6.bias": (4096,),
    "defc5.weight": (4096, 4096), "defc5.bias": (4096,),
    "deconv5.weight": (256, 256, 4, 4), "deconv5.bias": (256,),
    "conv5_1.weight": (256, 512, 3, 3), "conv5_1.bias": (512,),
    "deconv4.weight": (512, 256, 4, 4), "deconv4.bias": (256,),
    "conv4_1.weight": (256, 256, 3, 3), "conv4_1.bias": (256,),
    "deconv3.weight": (256, 128, 4, 4), "deconv3.bias": (128,),
    "conv3_1.weight": (128, 128, 3, 3), "conv3_1.bias": (128,),
    "deconv2.weight": (128, 64, 4, 4), "deconv2.bias": (64,),
    "deconv1.weight": (64, 32, 4, 4), "deconv1.bias": (32,),
    "deconv0.weight": (32, 3, 4, 4), "deconv0.bias": (3,),
}  # fmt: skip


def test_deepsim_fc6_layout_round_trip(tmp_path, isolated):
    from collections import OrderedDict

    from dgn.nets.deepsim import DeePSimGenerator

    released = OrderedDict((k, torch.randn(shape)) for k, shape in DEEPSIM_FC6_SHAPES.items())
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    torch.save(released, by_hand / "upconvGAN_fc6.pt")
    stored = weights.download("deepsim-fc6", weights_dir=by_hand)
    assert stored == isolated / "deepsim-fc6.safetensors"
    state = weights.load_state_dict("deepsim-fc6")
    assert set(state) == set(released)
    for key, value in released.items():
        assert torch.equal(state[key], value), key
    assert weights.recorded_sha256("deepsim-fc6") == _sha(by_hand / "upconvGAN_fc6.pt")
    DeePSimGenerator("fc6").load_state_dict(state, strict=True)


# ----- bounds files ---------------------------------------------------------------------------------------
def test_load_bounds_file(fixtures_dir, tmp_path):
    real = fixtures_dir / "dgn_am_upstream" / "act_range" / "3x" / "fc6.txt"
    values = weights.load_bounds_file(real, n_units=4096)
    assert values.dtype == torch.float32 and values.shape == (4096,)
    assert values[:5].tolist() == [12, 11, 13, 13, 12]
    with pytest.raises(DGNError, match="has 4096 values, expected 4095"):
        weights.load_bounds_file(real, n_units=4095)
    cases = {"empty.txt": ("  \n", "empty"), "word.txt": ("1 2 x 4", "'x' is not a number"),
             "inf.txt": ("1 inf", "non-finite")}  # fmt: skip
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DGNError, match=match):
            weights.load_bounds_file(tmp_path / name)
    with pytest.raises(DGNError, match="cannot read bounds file"):
        weights.load_bounds_file(tmp_path / "missing.txt")


def test_resolve_bounds_one_rule_for_every_command(tmp_path):
    from dgn.weights import load_bounds, resolve_bounds

    shipped, label = resolve_bounds(None, "cifar-deepsim-fc6", 512)
    assert label == "cifar-fc6-bounds-3x" and torch.equal(shipped, load_bounds(label))
    assert resolve_bounds(None, "cifar-deepsim-fc6", 512, random_weights=True)[0] is None
    assert resolve_bounds("7.5", "cifar-deepsim-fc6", 512) == (7.5, "7.5")
    assert torch.equal(resolve_bounds("cifar-fc6-bounds-1x", "x", 512)[0], load_bounds("cifar-fc6-bounds-1x"))
    file = tmp_path / "b.txt"
    file.write_text(" ".join(["2"] * 512))
    assert torch.equal(resolve_bounds(str(file), "x", 512)[0], torch.full((512,), 2.0))
    for bad in ("-1", "inf", "nonsense"):
        with pytest.raises(DGNError, match="--bounds"):
            resolve_bounds(bad, "cifar-deepsim-fc6", 512)


# ----- the checkout's pretrained/ folder ----------------------------------------------------------------
def test_pretrained_readme_is_the_registry_table():
    readme = (weights.CHECKOUT_PRETRAINED / "README.md").read_text(encoding="utf-8")
    assert readme.endswith(weights.registry_table()), "regenerate: dgn weights table (see pretrained/README.md)"
    for name in weights.names():
        assert f"| {name} |" in readme


def test_a_checkout_downloads_into_its_pretrained_folder(tmp_path, monkeypatch):
    checkout = tmp_path / "repo"
    (checkout / "pretrained").mkdir(parents=True)
    monkeypatch.setattr(weights, "CHECKOUT_PRETRAINED", checkout / "pretrained")
    monkeypatch.delenv("DGN_CACHE")
    assert weights.cache_dir() == weights.Path.home() / ".cache" / "dgn"  # not a checkout yet: no README
    (checkout / "pretrained" / "README.md").write_text("x")
    (checkout / "pyproject.toml").write_text("x")
    assert weights.cache_dir() == checkout / "pretrained"
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "elsewhere"))
    assert weights.cache_dir() == tmp_path / "elsewhere"  # $DGN_CACHE still wins


def test_convert_defaults_to_the_cache_only_for_registry_architectures(tmp_path, capsys):
    from dgn.cli import main

    assert main(["convert", "caffe", "--caffemodel", str(tmp_path / "m.caffemodel"), "--arch", "generic"]) == 2
    assert "--arch generic needs --out" in capsys.readouterr().err


def test_a_non_editable_install_ships_the_offline_worlds(tmp_path):
    """`pip install .` (not -e) installs the shipped weights as package data: the quick demo runs from it."""
    import shutil
    import subprocess
    import sys

    repo, source = weights.CHECKOUT_PRETRAINED.parent, tmp_path / "source"  # a copy: the build writes beside it
    shutil.copytree(repo / "dgn", source / "dgn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert (target / "dgn" / "pretrained" / "cifar-deepsim-fc6.safetensors").is_file()
    assert not (target / "pretrained").exists()
    env = {**os.environ, "PYTHONPATH": str(target), "DGN_OFFLINE": "1", "DGN_CACHE": str(tmp_path / "cache")}
    code = ("import dgn, sys; assert dgn.__file__.startswith(sys.argv[1]), dgn.__file__; "
            "from dgn.cli import main; raise SystemExit(main(['demo', '--quick', '--device', 'cpu', '--out', sys.argv[2]]))")
    run = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "demo")], check=False, env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "demo" / "index.html").is_file()


def test_each_deepsim_prior_defaults_to_its_own_code_bounds(fixtures_dir, monkeypatch, tmp_path):
    """fc7/fc8/pool5 priors get the original's bounds for their own code (medians 3, 8 and 29), not fc6's
    (median 12); missing bounds are an error, not a silent scalar."""
    from dgn.weights import resolve_bounds

    upstream = fixtures_dir / "dgn_am_upstream" / "act_range"
    expected = {"deepsim-fc6": ("bounds-fc6-3x", "3x/fc6.txt", 4096, 12),
                "deepsim-fc7": ("bounds-fc7-3x", "3x/fc7.txt", 4096, 3),
                "deepsim-fc8": ("bounds-fc8-3x", "3x/fc8.txt", 1000, 8),
                "deepsim-pool5": ("bounds-pool5-2x", "2x/pool5.txt", 9216, 29)}  # the original ships no 3x pool5
    monkeypatch.setenv("DGN_OFFLINE", "1")
    with pytest.raises(DGNError, match="not available.*dgn weights download bounds-fc7-3x.*--bounds"):
        resolve_bounds(None, "deepsim-fc7", 4096)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    for generator, (name, rel, units, median) in expected.items():
        entry = weights.get_entry(name)
        assert weights.get_entry(generator).default_bounds == name and entry.code_size == units
        assert entry.sha256 == _sha(upstream / rel) and entry.size == (upstream / rel).stat().st_size
        assert entry.url.endswith(f"act_range/{rel}")
        shutil.copy(upstream / rel, by_hand / entry.file)
        bounds, label = resolve_bounds(None, generator, units, weights_dir=by_hand)
        assert label == name and bounds.shape == (units,) and float(bounds.median()) == median
        (by_hand / entry.file).unlink()
