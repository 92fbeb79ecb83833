"""Pretrained weights: a registry of named files, downloads, and a local safetensors cache.

Each registry entry (``dgn/pretrained/registry.json``) names one file: a generator or classifier
checkpoint, or a text file of per-unit code bounds. :func:`download` finds it, in this order:

1. already converted: ``<name>.safetensors`` (bounds: ``<name>.txt``) in a local override directory
   (``weights_dir`` argument / ``--weights-dir``, then ``$DGN_WEIGHTS_DIR``) or in the cache
   (``$DGN_CACHE``; else, in a checkout of the repository, its top-level ``pretrained/``; else
   ``~/.cache/dgn``);
2. the original file (e.g. ``upconvGAN_fc6.pt``) copied by hand into one of those directories
   (torchvision files are also looked up in torch.hub's checkpoint directory);
3. the network: the Hugging Face Hub (pinned revision, honours ``HF_HUB_OFFLINE``), torchvision's
   weight URLs, or a plain URL. ``DGN_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids all downloads.

The original file's sha256 is checked against the registry; where the registry has none, the
checksum computed on first use is recorded in ``<cache>/<name>.json`` and later files must match
it. Checkpoints are read only with ``torch.load(weights_only=True)`` (no pickled code runs), then
stored once as ``<cache>/<name>.safetensors`` (written to a temporary file, then renamed).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import os
import pickle
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dgn.errors import DGNError
from dgn.files import atomic_write, sha256_file

SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"  # small weights that ship with the package
REGISTRY_PATH = SHIPPED_DIR / "registry.json"
# In a checkout (dgn imported from the source tree) the top-level pretrained/ folder is where weights are
# downloaded and converted to; it holds a README generated from the registry (``dgn weights table``).
CHECKOUT_PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"

KINDS = ("generator", "classifier", "bounds")
SOURCE_TYPES = ("hf", "torchvision", "url", "shipped")
_TRUE = ("1", "true", "yes", "on")
_DEEPSIM_KEY_QUIRK = re.compile(r"^([^.]+)\.1\.(weight|bias)$")  # old conversions: "defc7.1.weight"
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub file names: "alexnet-owt-7be5be79.pth"


@dataclass(frozen=True)
class WeightsSource:
    """Where a file comes from: ``type`` is "hf", "torchvision", "url", or "shipped" (in ``dgn/pretrained``)."""

    type: str
    repo: str | None = None
    filename: str | None = None
    revision: str | None = None
    url: str | None = None
    weights: str | None = None  # torchvision weights enum, e.g. "AlexNet_Weights.IMAGENET1K_V1"


@dataclass(frozen=True)
class WeightsEntry:
    """One registry entry (see ``dgn/pretrained/registry.json``)."""

    name: str
    kind: str
    architecture: str
    source: WeightsSource
    file: str
    sha256: str | None
    size: int | None
    code_size: int | None  # bounds files: the number of values (a model's shapes live in its architecture)
    default_bounds: str | None
    licence: str
    card: str

    @property
    def url(self) -> str:
        """A URL a person can download the original file from."""
        src = self.source
        if src.type == "hf":
            return f"https://huggingface.co/{src.repo}/resolve/{src.revision or 'main'}/{src.filename}"
        if src.type == "url":
            return str(src.url)
        if src.type == "shipped":
            return str(SHIPPED_DIR / self.file)
        return _torchvision_url(self)

    @property
    def stored_name(self) -> str:
        """File name of the converted copy: ``<name>.safetensors``, or ``<name>.txt`` for bounds."""
        return f"{self.name}.txt" if self.kind == "bounds" else f"{self.name}.safetensors"


# ----- registry -------------------------------------------------------------------------------------
def _entry_from_json(obj: Mapping[str, Any], where: str) -> WeightsEntry:
    required = ("name", "kind", "architecture", "source", "file", "licence", "card")
    missing = [k for k in required if not obj.get(k)]
    if missing:
        raise DGNError(f"registry {where}: entry {obj.get('name', '?')!r} lacks {', '.join(missing)}")
    name = obj["name"]
    src = dict(obj["source"])
    if src.get("type") not in SOURCE_TYPES:
        raise DGNError(
            f"registry {where}: {name!r} has source type {src.get('type')!r}; valid: {', '.join(SOURCE_TYPES)}"
        )
    needs = {"hf": ("repo", "filename"), "url": ("url",), "torchvision": ("weights",), "shipped": ()}[src["type"]]
    if any(not src.get(k) for k in needs):
        raise DGNError(f"registry {where}: {name!r} source {src['type']} needs {', '.join(needs)}")
    unknown = set(src) - {"type", "repo", "filename", "revision", "url", "weights"}
    if unknown:
        raise DGNError(f"registry {where}: {name!r} source has unknown fields {', '.join(sorted(unknown))}")
    if obj["kind"] not in KINDS:
        raise DGNError(f"registry {where}: {name!r} has kind {obj['kind']!r}; valid: {', '.join(KINDS)}")
    sha = obj.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise DGNError(f"registry {where}: {name!r} sha256 must be 64 lowercase hex digits or null")
    duplicated = [k for k in ("pixel_space", "code_shape", "input_size") if k in obj]
    if duplicated:
        raise DGNError(f"registry {where}: {name!r} gives {', '.join(duplicated)}; the architecture "
                       f"{obj['architecture']!r} (dgn.models.ARCHITECTURES) is their one source")
    return WeightsEntry(
        name=name,
        kind=obj["kind"],
        architecture=obj["architecture"],
        source=WeightsSource(**src),
        file=obj["file"],
        sha256=sha,
        size=obj.get("size"),
        code_size=obj.get("code_size"),
        default_bounds=obj.get("default_bounds"),
        licence=obj["licence"],
        card=obj["card"],
    )


def parse_registry(data: Mapping[str, Any], where: str = "<memory>") -> dict[str, WeightsEntry]:
    """Validate a registry document (``{"entries": [...]}``) and index its entries by name."""
    entries: dict[str, WeightsEntry] = {}
    for obj in data.get("entries", []):
        entry = _entry_from_json(obj, where)
        if entry.name in entries:
            raise DGNError(f"registry {where}: duplicate entry {entry.name!r}")
        entries[entry.name] = entry
    for entry in entries.values():
        bound = entry.default_bounds
        if bound is not None and (bound not in entries or entries[bound].kind != "bounds"):
            raise DGNError(f"registry {where}: {entry.name!r} default_bounds {bound!r} is not a bounds entry")
    return entries


@functools.lru_cache(maxsize=1)
def _registry_cached() -> dict[str, WeightsEntry]:
    try:
        data = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DGNError(f"weights registry not found at {REGISTRY_PATH}") from None
    except json.JSONDecodeError as err:
        raise DGNError(f"weights registry {REGISTRY_PATH} is not valid JSON: {err}") from None
    return parse_registry(data, str(REGISTRY_PATH))


def registry() -> dict[str, WeightsEntry]:
    """All registry entries by name (a new dict; the entries are frozen)."""
    return dict(_registry_cached())


def names(kind: str | None = None) -> list[str]:
    """Registry names, optionally only those of one kind ("generator", "classifier", "bounds")."""
    return [n for n, e in registry().items() if kind is None or e.kind == kind]


def get_entry(name: str) -> WeightsEntry:
    """The registry entry called ``name``; an unknown name raises a DGNError with the closest names."""
    entries = registry()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise DGNError(f"unknown weights {name!r}; {hint}valid: {', '.join(entries)}")


# ----- locations ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where weights are downloaded and converted to (not created here): ``$DGN_CACHE``; else, in a checkout
    of the repository, its ``pretrained/`` folder; else ``~/.cache/dgn``."""
    env = os.environ.get("DGN_CACHE")
    if env:
        return Path(env).expanduser()
    if (CHECKOUT_PRETRAINED / "README.md").is_file() and (CHECKOUT_PRETRAINED.parent / "pyproject.toml").is_file():
        return CHECKOUT_PRETRAINED
    return Path.home() / ".cache" / "dgn"


def weights_dirs(extra: str | os.PathLike | None = None) -> list[Path]:
    """Local override directories, first match wins: ``extra`` (``--weights-dir``), then ``$DGN_WEIGHTS_DIR``
    (several separated by ``os.pathsep``). Files copied there by hand are used without any download."""
    dirs: list[Path] = []
    if extra is not None and str(extra):
        dirs.append(Path(extra).expanduser())
    for part in os.environ.get("DGN_WEIGHTS_DIR", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()).expanduser())
    return dirs


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("DGN_OFFLINE", "HF_HUB_OFFLINE"))


def path(name: str, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The converted file (``<name>.safetensors``, bounds ``<name>.txt``) if present locally, else None."""
    entry = get_entry(name)
    for folder in [*weights_dirs(weights_dir), cache_dir()]:
        candidate = folder / entry.stored_name
        if candidate.is_file():
            return candidate
    if entry.source.type == "shipped":
        shipped = SHIPPED_DIR / entry.file
        return shipped if shipped.is_file() else None
    return None


def _record_path(name: str) -> Path:
    return cache_dir() / f"{name}.json"


def recorded_sha256(name: str) -> str | None:
    """The sha256 of the original file recorded when ``name`` was first fetched (None if never)."""
    try:
        return json.loads(_record_path(name).read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        return None


# ----- checkpoint conversion -------------------------------------------------------------------------
def read_checkpoint(file: str | os.PathLike, architecture: str = "") -> dict[str, torch.Tensor]:
    """Read a pickled PyTorch checkpoint safely and normalise its keys.

    Loads with ``torch.load(weights_only=True, map_location="cpu")``, so no pickled code runs (a
    file holding other objects is refused with a DGNError); unwraps ``{"state_dict": ...}``; strips
    a ``module.`` prefix; adds ``num_batches_tracked`` (0) to BatchNorm layers saved before it
    existed, as torch itself does for such files. Architecture fixes: DeePSim / CaffeNet keys of the
    old ``"defc7.1.weight"`` form become ``"defc7.weight"``; torchvision GoogLeNet's auxiliary
    classifiers (``aux1.*``, ``aux2.*``) are dropped, matching ``googlenet(aux_logits=False)``.
    """
    file = Path(file)
    try:
        obj = torch.load(file, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        if "global" in detail.lower():
            raise DGNError(
                f"refusing to load {file}: it holds Python objects other than tensors ({detail}); dgn reads "
                "checkpoints with torch.load(weights_only=True) and never runs pickled code"
            ) from None
        raise DGNError(f"cannot read checkpoint {file}: {detail}") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        raise DGNError(f"cannot read checkpoint {file}: {_one_line(err)}") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise DGNError(f"checkpoint {file} holds a {type(obj).__name__}, not a state_dict")
    state: dict[str, torch.Tensor] = {}
    deepsim_like = architecture.startswith("deepsim-") or architecture == "caffenet"
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise DGNError(f"checkpoint {file}: entry {key!r} is a {type(value).__name__}, not a tensor")
        key = key.removeprefix("module.")
        if deepsim_like:
            key = _DEEPSIM_KEY_QUIRK.sub(r"\1.\2", key)
        if architecture == "googlenet" and key.startswith(("aux1.", "aux2.")):
            continue
        if key in state:
            raise DGNError(f"checkpoint {file}: two entries map to the key {key!r}")
        state[key] = value
    for key in [k for k in state if k.endswith(".running_var")]:
        prefix = key[: -len("running_var")]
        if prefix + "running_mean" in state and prefix + "num_batches_tracked" not in state:
            state[prefix + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    if not state:
        raise DGNError(f"checkpoint {file} holds no tensors")
    return _own_storage(state)


def _unpickler_detail(err: BaseException) -> str:
    """The reason inside torch's weights-only error (without its advice to load unsafely)."""
    text = str(err)
    match = re.search(r"WeightsUnpickler error:\s*(.+)", text, re.DOTALL)
    reason = match.group(1) if match else text
    reason = reason.strip().splitlines()[0] if reason.strip() else type(err).__name__
    return reason.split(". ")[0].rstrip(".")


def _own_storage(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors that do not share memory (what safetensors requires)."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.detach()
        storage = value.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != value.numel() * value.element_size():
            value = value.clone()
        value = value.contiguous()
        seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    return out


# ----- fetching ---------------------------------------------------------------------------------------
def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _missing(entry: WeightsEntry, reason: str) -> DGNError:
    return DGNError(
        f"weights file {entry.file!r} for {entry.name!r} is not available ({reason}): download it from {entry.url} "
        f"and put it in {cache_dir()} or in a folder given by --weights-dir / $DGN_WEIGHTS_DIR"
    )


def _torchvision_weights(entry: WeightsEntry):
    try:
        import torchvision

        return torchvision.models.get_weight(str(entry.source.weights))
    except Exception as err:  # noqa: BLE001 - unknown enum names raise several types
        raise DGNError(
            f"torchvision has no weights {entry.source.weights!r} for {entry.name!r}: {_one_line(err)}"
        ) from None


def _torchvision_url(entry: WeightsEntry) -> str:
    return str(_torchvision_weights(entry).url)


def _find_original(entry: WeightsEntry, weights_dir: str | os.PathLike | None) -> Path | None:
    folders = [*weights_dirs(weights_dir), cache_dir()]
    if entry.source.type == "torchvision":
        folders.append(Path(torch.hub.get_dir()) / "checkpoints")
    for folder in folders:
        candidate = folder / entry.file
        if candidate.is_file():
            return candidate
    return None


def _fetch_url(entry: WeightsEntry, url: str) -> Path:
    """Download ``url`` to a temporary file in the cache directory; the caller removes it."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{entry.file}.", suffix=".download", dir=cache_dir())
    os.close(fd)
    tmp = Path(name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "dgn-am"})
        with urllib.request.urlopen(request, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise _missing(entry, f"download failed: {_one_line(err)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _silent_tqdm():
    from tqdm import tqdm

    class _Silent(tqdm):  # the library never prints
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Silent


def _fetch_hf(entry: WeightsEntry, force: bool) -> Path:
    from huggingface_hub import hf_hub_download

    offline = _offline()
    kwargs: dict[str, Any] = {
        "repo_id": entry.source.repo,
        "filename": entry.source.filename,
        "revision": entry.source.revision,
        "local_files_only": offline,
        "force_download": force and not offline,
    }
    try:
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
            kwargs["tqdm_class"] = _silent_tqdm()
    except (TypeError, ValueError):
        pass
    try:
        return Path(hf_hub_download(**kwargs))
    except Exception as err:  # noqa: BLE001 - network, offline-cache and hub errors all end here
        reason = (
            "offline (HF_HUB_OFFLINE / DGN_OFFLINE) and not in the Hugging Face cache"
            if offline
            else _one_line(err)
        )
        raise _missing(entry, reason) from None


def _verify(entry: WeightsEntry, file: Path) -> str:
    """Check ``file`` against the registry's sha256 (or the one recorded on first use); return its sha256."""
    actual = sha256_file(file)
    if entry.sha256 is not None:
        if actual != entry.sha256:
            raise DGNError(
                f"checksum mismatch for {file} ({entry.name}): expected sha256 {entry.sha256}, got {actual}"
            )
        return actual
    recorded = recorded_sha256(entry.name)
    if recorded is not None and actual != recorded:
        raise DGNError(
            f"checksum mismatch for {file} ({entry.name}): expected sha256 {recorded} (recorded on first download in "
            f"{_record_path(entry.name)}; delete that file if the upstream file changed on purpose), got {actual}"
        )
    match = _HASH_PREFIX.search(entry.file) if entry.source.type == "torchvision" else None
    if match and not actual.startswith(match.group(1)):
        raise DGNError(
            f"checksum mismatch for {file} ({entry.name}): expected a sha256 starting {match.group(1)}, got {actual}"
        )
    return actual


def _store(entry: WeightsEntry, original: Path, sha: str, origin: str) -> Path:
    final = cache_dir() / entry.stored_name
    if entry.kind == "bounds":
        load_bounds_file(original, entry.code_size)  # refuse a malformed file before storing it
        atomic_write(final, lambda tmp: shutil.copyfile(original, tmp))
    else:
        from safetensors.torch import save_file

        state = read_checkpoint(original, entry.architecture)
        meta = {"dgn_name": entry.name, "source_file": entry.file, "source_sha256": sha}
        atomic_write(final, lambda tmp: save_file(state, str(tmp), metadata=meta))
    record = {
        "name": entry.name,
        "file": entry.file,
        "sha256": sha,
        "size": original.stat().st_size,
        "origin": origin,
        "checked_against_registry": entry.sha256 is not None,
        "stored": final.name,
    }
    atomic_write(_record_path(entry.name), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    return final


def download(name: str, weights_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Make ``name`` available locally and return the converted file (safetensors, or .txt for bounds).

    Looks in the override directories and the cache first (see the module docstring), then
    downloads. ``force`` ignores converted copies and rebuilds the cached one from the original
    file (a copy found locally, else a fresh download). Raises a one-line DGNError when the file is
    missing offline, a download fails, or a checksum does not match (nothing is then cached).
    """
    entry = get_entry(name)
    if not force:
        found = path(name, weights_dir)
        if found is not None:
            return found
    if entry.source.type == "shipped":
        raise DGNError(f"{entry.file} should ship in {SHIPPED_DIR} but is missing; reinstall dgn-am")
    original = _find_original(entry, weights_dir)
    if original is not None:
        return _store(entry, original, _verify(entry, original), f"local file {original}")
    source = entry.source
    if source.type == "hf":
        fetched = _fetch_hf(entry, force)
        return _store(
            entry, fetched, _verify(entry, fetched), f"hf://{source.repo}@{source.revision}/{source.filename}"
        )
    if _offline():
        raise _missing(entry, "offline (DGN_OFFLINE / HF_HUB_OFFLINE) and not found locally")
    url = entry.url
    tmp = _fetch_url(entry, url)
    try:
        return _store(entry, tmp, _verify(entry, tmp), url)
    finally:
        tmp.unlink(missing_ok=True)


# ----- loading ---------------------------------------------------------------------------------------
def load_state_dict(
    name: str, weights_dir: str | os.PathLike | None = None, fetch: bool = True
) -> dict[str, torch.Tensor]:
    """The state_dict of a generator or classifier entry, read from its safetensors file.

    With ``fetch=False`` nothing is downloaded: a missing file raises a DGNError saying where to get it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    entry = get_entry(name)
    if entry.kind == "bounds":
        raise DGNError(f"{name!r} is a bounds file, not a state_dict; use load_bounds({name!r})")
    file = download(name, weights_dir) if fetch else path(name, weights_dir)
    if file is None:
        raise _missing(entry, "not found locally and fetching is off")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise DGNError(f"cannot read {file} ({_one_line(err)}); delete it and download again") from None


def load_bounds_file(file: str | os.PathLike, n_units: int | None = None) -> torch.Tensor:
    """Per-unit code upper bounds from a text file such as the original ``act_range/3x/fc6.txt``.

    The file holds one line of whitespace-separated numbers (any whitespace is accepted). Returns a
    float32 tensor; raises a DGNError for unreadable or non-finite values, or when ``n_units`` is
    given and the count differs.
    """
    file = Path(file)
    try:
        tokens = file.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as err:
        raise DGNError(f"cannot read bounds file {file}: {_one_line(err)}") from None
    if not tokens:
        raise DGNError(f"bounds file {file} is empty")
    try:
        values = torch.tensor([float(t) for t in tokens], dtype=torch.float32)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise DGNError(f"bounds file {file}: {bad!r} is not a number") from None
    if not torch.isfinite(values).all():
        raise DGNError(f"bounds file {file} contains non-finite values")
    if n_units is not None and values.numel() != n_units:
        raise DGNError(
            f"bounds file {file} has {values.numel()} values, expected {n_units} (one per code unit)"
        )
    return values


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def load_bounds(name: str, weights_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """The per-unit upper bounds of a bounds entry (downloaded if needed)."""
    entry = get_entry(name)
    if entry.kind != "bounds":
        raise DGNError(f"{name!r} is a {entry.kind}, not a bounds file; bounds: {', '.join(names('bounds'))}")
    return load_bounds_file(download(name, weights_dir), entry.code_size)


def resolve_bounds(
    value: str | None, generator: str, code_units: int, random_weights: bool = False,
    weights_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor | float | None, str]:
    """A ``--bounds`` option as (upper bound, label for the manifest).

    ``value`` is a positive number, a bounds file or a bounds entry; None means the generator's registered
    per-unit bounds (e.g. ``bounds-fc7-3x`` for ``deepsim-fc7``), or its scalar default with random weights
    or an unregistered generator. Registered bounds that cannot be had here are a one-line error naming
    the download and ``--bounds``: a run never falls back to another box silently.
    """
    if value is None:
        default = None
        if not random_weights and generator in names():
            default = get_entry(generator).default_bounds
        if default is None:
            return None, "generator default (scalar)"
        try:
            return load_bounds(default, weights_dir), default
        except DGNError as err:
            raise DGNError(f"{generator}'s code bounds {default} are not available ({err}); run "
                           f"`dgn weights download {default}` or give --bounds FILE|NAME|NUMBER") from None
    try:
        bound = float(value)
    except ValueError:
        pass
    else:
        if not (bound > 0 and bound != float("inf")):
            raise DGNError(f"--bounds must be a positive number, a file or a bounds entry, got {value!r}")
        return bound, value
    if Path(value).is_file():
        return load_bounds_file(value, code_units), value
    if value in names("bounds"):
        return load_bounds(value, weights_dir), value
    raise DGNError(f"--bounds {value!r} is neither a number, an existing file, nor a bounds entry "
                   f"({', '.join(names('bounds'))})")


def describe(weights_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per registry entry for ``dgn weights list``: name, kind, licence, card, cached path, sha256."""
    rows = []
    for entry in registry().values():
        local = path(entry.name, weights_dir)
        recorded = recorded_sha256(entry.name)
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "architecture": entry.architecture,
                "licence": entry.licence,
                "card": entry.card,
                "cached": local is not None,
                "path": str(local) if local is not None else None,
                "sha256": entry.sha256 or recorded,
                "sha256_from": "registry"
                if entry.sha256
                else ("recorded on first download" if recorded else None),
                "size": entry.size,
                "source": entry.source.type,
            }
        )
    return rows


def registry_table() -> str:
    """The registry as a Markdown table (the body of ``pretrained/README.md``): one row per entry with its
    kind, architecture, source, sha256, size, licence and how to get it."""
    lines = ["| name | kind | architecture | source | sha256 | size | licence | how to get it |",
             "|---|---|---|---|---|---|---|---|"]
    for e in registry().values():
        src = e.source
        source = {"hf": f"Hugging Face `{src.repo}` `{src.filename}`", "torchvision": f"torchvision `{src.weights}`",
                  "url": f"[{e.file}]({src.url})", "shipped": "ships with dgn"}[src.type]
        sha = f"`{e.sha256[:12]}…`" if e.sha256 else "recorded on first download"
        size = "-" if not e.size else f"{e.size / 2**20:.1f} MiB" if e.size >= 2**20 else f"{e.size / 2**10:.0f} KiB"
        licence = e.licence.split(":")[0].split(";")[0].split(" (")[0].strip()
        get = "installed with dgn" if src.type == "shipped" else f"`dgn weights download {e.name}`"
        if e.name in CONVERTIBLE_FROM_CAFFE:
            get += f", or `dgn convert caffe --caffemodel FILE --arch {e.name}`"
        lines.append(f"| {e.name} | {e.kind} | {e.architecture if e.kind != 'bounds' else '-'} | {source} | {sha} "
                     f"| {size} | {licence} | {get} |")
    return "\n".join(lines) + "\n"


CONVERTIBLE_FROM_CAFFE = ("deepsim-fc6", "deepsim-fc7", "deepsim-fc8", "deepsim-pool5", "caffenet")  # dgn convert caffe
