"""DeePSim generator training (Dosovitskiy & Brox, 2016) and a small classifier training loop.

A generator G learns to invert a frozen encoder E at a code layer (post-ReLU, e.g. fc6): for a
real image x with code y = relu(E(x)), G(y) should look like x. The loss is

    L = lambda_img * L_img + lambda_feat * L_feat + lambda_adv * L_adv

with Caffe's Euclidean convention (sum of squares / (2 * batch)):
- ``L_img``  = Euclid(fit(G(y)), x), in the encoder's pixel space and size;
- ``L_feat`` = Euclid(C(fit(G(y))), C(x)), C = a feature layer of the same frozen encoder (pool5);
- ``L_adv``  = softmax loss of a discriminator D(image, code) calling G(y) real.

D is trained on (x, y) = real and (G(y), y) = generated. Both use Adam 2e-4 (0.9, 0.999). The
original D/G balancing rule pauses either network, with r = (L_D_real + L_D_fake) / L_G_adv
(see :func:`update_switches`).

Data: any dataset whose items are RGB 0..1 tensors (3, H, W) of one size, or tuples whose first
element is one (``ImageFolderDataset`` with :func:`rgb_transform`). Images are converted to the
encoder's pixel space with its crop/resize policy (``dgn.spaces.convert``).

Determinism and resuming: the batch order is a function of (seed, epoch) (``DistributedSampler``),
and every step runs under a forked RNG seeded from (seed, step, rank), so a checkpoint written after
step k and resumed gives exactly the steps an uninterrupted run would have taken.

Scale-out: when ``torch.distributed`` is initialised (torchrun), batches are sharded with a
``DistributedSampler``, G and D are wrapped in DDP, the losses that drive the pausing rule are
averaged across ranks (so all ranks take the same decisions), and only rank 0 writes files and
calls the progress callback.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from dgn import spaces
from dgn.errors import DGNError
from dgn.layers import forward_to, resolve_layer
from dgn.models import Classifier, Generator

# ---------------------------------------------------------------------------------------------
# losses and the balancing rule


def euclidean_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Caffe's EuclideanLoss: sum of squared differences / (2 * batch size).

    Args:
        a, b: tensors of the same shape, batch first.

    Returns:
        A scalar (float32).
    """
    return (a.float() - b.float()).pow(2).sum() / (2 * a.shape[0])


@dataclass
class Switches:
    """Which of D and G are currently being updated."""

    train_d: bool = True
    train_g: bool = True


def update_switches(
    switches: Switches,
    d_real: float,
    d_fake: float,
    g_adv: float,
    d_freeze_below: float = 0.1,
    d_resume_above: float = 0.5,
    g_freeze_above: float = 10.0,
    g_resume_below: float = 10.0,
) -> Switches:
    """The DeePSim D/G pausing rule, as a pure function of one step's losses.

    With r = (d_real + d_fake) / g_adv:
    - r < ``d_freeze_below`` (0.1) and D training -> freeze D (D wins too easily);
    - r > ``d_resume_above`` (0.5) and D frozen -> resume D;
    - r > ``g_freeze_above`` (10) and G training -> freeze G (G fools D too easily);
    - r < ``g_resume_below`` (10) and G frozen -> resume G. The original rule only states when G
      stops; G resumes as soon as D (still training) has brought r back under the freeze threshold.

    Args:
        switches: the current state.
        d_real, d_fake: D's softmax losses on real and on generated pairs.
        g_adv: G's adversarial loss (D's loss for calling generated pairs real).

    Returns:
        The new state (the input is not modified).
    """
    r = (d_real + d_fake) / max(g_adv, 1e-12)
    train_d, train_g = switches.train_d, switches.train_g
    if train_d and r < d_freeze_below:
        train_d = False
    elif not train_d and r > d_resume_above:
        train_d = True
    if train_g and r > g_freeze_above:
        train_g = False
    elif not train_g and r < g_resume_below:
        train_g = True
    return Switches(train_d, train_g)


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass
class TrainConfig:
    """Every setting of a DeePSim training run; the defaults are the original's.

    Attributes:
        code_layer: encoder layer whose post-ReLU output is the code (e.g. "fc6").
        comparator_layer: encoder layer compared in L_feat (e.g. "pool5" as in DGN-AM's generator).
        lambda_img, lambda_feat, lambda_adv: loss weights (2e-6, 0.01, 100).
        lr, betas: Adam for both G and D.
        weight_decay_d: D's weight decay (the original solver had 4e-4; G layers had none).
        batch_size: images per step and per rank.
        seed: data order and per-step RNG.
        d_freeze_below, d_resume_above, g_freeze_above, g_resume_below: the pausing rule.
        bf16: run the forward passes under bfloat16 autocast.
        preview_every: write a reconstruction montage every N steps (0 = never).
        preview_count: images in the montage.
        checkpoint_every: write a checkpoint every N steps (0 = only when asked).
        fit_mode: crop/resize policy of ``dgn.spaces.fit`` from G's output to the encoder's input.
    """

    code_layer: str = "fc6"
    comparator_layer: str = "pool5"
    lambda_img: float = 2e-6
    lambda_feat: float = 0.01
    lambda_adv: float = 100.0
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay_d: float = 0.0
    batch_size: int = 64
    seed: int = 0
    d_freeze_below: float = 0.1
    d_resume_above: float = 0.5
    g_freeze_above: float = 10.0
    g_resume_below: float = 10.0
    bf16: bool = False
    preview_every: int = 0
    preview_count: int = 8
    checkpoint_every: int = 0
    fit_mode: str = "auto"

    def to_json(self) -> str:
        """The configuration as a JSON string."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Rebuild a configuration written by :meth:`to_json` (unknown keys are an error)."""
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DGNError(f"unknown training config keys: {', '.join(unknown)}")
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


@dataclass
class StepLosses:
    """Losses of one step (averaged over ranks) and the D/G state they were computed under."""

    step: int
    img: float
    feat: float
    adv: float
    total: float
    d_real: float
    d_fake: float
    code_rel_err: float  # ||relu(E(G(y))) - y|| / ||y||, a diagnostic (not a loss term)
    train_d: bool
    train_g: bool

    def brief(self) -> dict[str, str]:
        """Short formatted values for a progress bar's postfix."""
        return {
            "img": f"{self.img:.3g}", "feat": f"{self.feat:.3g}", "adv": f"{self.adv:.2f}",
            "d": f"{self.d_real + self.d_fake:.2f}", "code": f"{self.code_rel_err:.3f}",
            "D": "on" if self.train_d else "off", "G": "on" if self.train_g else "off",
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# data


def rgb_transform(size: int | tuple[int, int]) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> RGB 0..1 tensor (3, H, W): resize the shorter side, then centre crop to ``size``."""
    h, w = (size, size) if isinstance(size, int) else size

    def transform(image: Image.Image) -> torch.Tensor:
        scale = max(h / image.height, w / image.width)
        if image.size != (w, h):
            new = (max(w, round(image.width * scale)), max(h, round(image.height * scale)))
            image = image.resize(new, Image.BILINEAR)
            left, top = (image.width - w) // 2, (image.height - h) // 2
            image = image.crop((left, top, left + w, top + h))
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)

    return transform


def _image_of(item: Any) -> torch.Tensor:
    image = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(image, torch.Tensor):
        raise DGNError(
            "dataset items must be RGB 0..1 tensors (or tuples starting with one); use rgb_transform"
        )
    return image


def _stack(dataset: Dataset, indices: Sequence[int]) -> torch.Tensor:
    return torch.stack([_image_of(dataset[int(i)]) for i in indices])


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_device() -> torch.device:
    """CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# checkpoints


def _optimizer_tensors(
    prefix: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = value
    meta = {"param_groups": state["param_groups"], "scalars": scalars}
    return tensors, meta


def _load_optimizer(
    prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    start = f"{prefix}.state."
    for name, value in tensors.items():
        if name.startswith(start):
            idx, key = name[len(start) :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


# ---------------------------------------------------------------------------------------------
# the trainer


class DeePSimTrainer:
    """Train a generator to invert a frozen encoder at a code layer, DeePSim-style.

    Args:
        encoder: the frozen network (its ``space`` gives the input encoding and size); its
            ``code_layer`` (post-ReLU) is the code and its ``comparator_layer`` the feature loss.
        generator: the network to train, with its output pixel space.
        discriminator: ``D(image, code) -> (B, 2)`` logits (index 1 = real), e.g. ``DeePSimDiscriminator``.
        dataset: RGB 0..1 image tensors (or tuples starting with one), all of one size.
        config: the settings (see :class:`TrainConfig`).
        device: where to train; ``None`` = CUDA when available.
        out_dir: where previews go (rank 0 only); ``None`` = no previews.
        preview_images: RGB 0..1 images (N, 3, H, W) to reconstruct in the previews; default:
            the first ``config.preview_count`` dataset images.
    """

    def __init__(
        self,
        encoder: Classifier,
        generator: Generator,
        discriminator: nn.Module,
        dataset: Dataset,
        config: TrainConfig | None = None,
        device: str | torch.device | None = None,
        out_dir: str | Path | None = None,
        preview_images: torch.Tensor | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        cfg = self.config
        self.device = torch.device(device) if device is not None else default_device()
        self.rank, self.world = _dist_info()
        self.encoder = encoder
        self.generator = generator
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.dataset = dataset
        if len(dataset) < cfg.batch_size * self.world:  # type: ignore[arg-type]
            raise DGNError(
                f"{len(dataset)} images are fewer than one batch ({cfg.batch_size} x {self.world} ranks)"
            )  # type: ignore[arg-type]

        encoder.module.to(self.device).eval()
        for p in encoder.module.parameters():
            p.requires_grad_(False)
        self.code_name = resolve_layer(encoder.module, cfg.code_layer)
        self.comp_name = resolve_layer(encoder.module, cfg.comparator_layer)

        g_module = generator.module.to(self.device).train()
        d_module = discriminator.to(self.device).train()
        for p in list(g_module.parameters()) + list(d_module.parameters()):
            p.requires_grad_(True)
        self.opt_g = torch.optim.Adam(g_module.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(
            d_module.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay_d
        )
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g: nn.Module = nn.parallel.DistributedDataParallel(g_module, device_ids=ids)
            self.d: nn.Module = nn.parallel.DistributedDataParallel(d_module, device_ids=ids)
        else:
            self.g, self.d = g_module, d_module

        self.sampler = DistributedSampler(
            dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DGNError("the dataset is smaller than one batch per rank")
        self._epoch_indices: tuple[int, list[int]] | None = None
        self.step_count = 0
        self.switches = Switches()
        if preview_images is None:
            n = min(cfg.preview_count, len(dataset))  # type: ignore[arg-type]
            preview_images = _stack(dataset, range(n))
        self.preview_images = preview_images

    # -- modules ------------------------------------------------------------------------------
    @property
    def g_module(self) -> nn.Module:
        """The generator network (unwrapped from DDP)."""
        return _unwrap(self.g)

    @property
    def d_module(self) -> nn.Module:
        """The discriminator network (unwrapped from DDP)."""
        return _unwrap(self.d)

    # -- pieces -------------------------------------------------------------------------------
    def _batch_indices(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch_indices is None or self._epoch_indices[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._epoch_indices = (epoch, list(self.sampler))
        b = self.config.batch_size
        return self._epoch_indices[1][k * b : (k + 1) * b]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def to_encoder_space(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0..1 images -> the encoder's pixel space and input size."""
        return spaces.convert(rgb.to(self.device), spaces.RGB01, self.encoder.space, self.config.fit_mode)

    def fake_to_encoder_space(self, images: torch.Tensor) -> torch.Tensor:
        """Generator outputs -> the encoder's pixel space and input size (differentiable)."""
        return spaces.convert(images, self.generator.space, self.encoder.space, self.config.fit_mode)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(post-ReLU code, comparator features) of encoder-space images, without gradients."""
        with torch.no_grad(), self._autocast():
            out = forward_to(self.encoder.module, x, [self.code_name, self.comp_name])
        return out[self.code_name].float().clamp_min(0), out[self.comp_name].float()

    def _reduce(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    # -- one step -----------------------------------------------------------------------------
    def step(self) -> StepLosses:
        """Run one training step (D update, then G update, each unless paused) and return its losses."""
        cfg = self.config
        step = self.step_count
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed((cfg.seed * 1_000_003 + step * 7919 + self.rank) % (2**63))
            result = self._step(step)
        self.step_count += 1
        return result

    def _step(self, step: int) -> StepLosses:
        cfg = self.config
        train_d, train_g = self.switches.train_d, self.switches.train_g
        rgb = _stack(self.dataset, self._batch_indices(step))
        x = self.to_encoder_space(rgb)
        code, feat_real = self.encode(x)

        # generator forward (with gradients only when G will be updated)
        with torch.set_grad_enabled(train_g), self._autocast():
            fake = self.fake_to_encoder_space(self.g(code).float())

        # discriminator
        real_label = torch.ones(x.shape[0], dtype=torch.long, device=self.device)
        fake_label = torch.zeros_like(real_label)
        pair_images = torch.cat([x, fake.detach()])
        pair_codes = torch.cat([code, code])
        if train_d:
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                logits = self.d(pair_images, pair_codes).float()
            d_real_t = F.cross_entropy(logits[: x.shape[0]], real_label)
            d_fake_t = F.cross_entropy(logits[x.shape[0] :], fake_label)
            (d_real_t + d_fake_t).backward()
            self.opt_d.step()
        else:
            with torch.no_grad(), self._autocast():
                logits = self.d_module(pair_images, pair_codes).float()
            d_real_t = F.cross_entropy(logits[: x.shape[0]], real_label)
            d_fake_t = F.cross_entropy(logits[x.shape[0] :], fake_label)

        # generator losses (D's parameters do not need gradients here)
        d_params = list(self.d_module.parameters())
        for p in d_params:
            p.requires_grad_(False)
        try:
            with torch.set_grad_enabled(train_g), self._autocast():
                feats = forward_to(self.encoder.module, fake, [self.comp_name, self.code_name])
                feat_fake = feats[self.comp_name].float()
                code_fake = feats[self.code_name].float().clamp_min(0)
                adv_logits = self.d_module(fake, code).float()
            l_img = euclidean_loss(fake, x)
            l_feat = euclidean_loss(feat_fake, feat_real)
            l_adv = F.cross_entropy(adv_logits, real_label)
            total = cfg.lambda_img * l_img + cfg.lambda_feat * l_feat + cfg.lambda_adv * l_adv
            if train_g:
                self.opt_g.zero_grad(set_to_none=True)
                total.backward()
                self.opt_g.step()
        finally:
            for p in d_params:
                p.requires_grad_(True)

        code_err = ((code_fake.detach() - code).norm() / code.norm().clamp_min(1e-12)).item()
        img, feat, adv, tot, d_real, d_fake, code_err = self._reduce(
            [
                l_img.item(),
                l_feat.item(),
                l_adv.item(),
                total.item(),
                d_real_t.item(),
                d_fake_t.item(),
                code_err,
            ]
        )
        self.switches = update_switches(
            self.switches, d_real, d_fake, adv,
            cfg.d_freeze_below, cfg.d_resume_above, cfg.g_freeze_above, cfg.g_resume_below,
        )  # fmt: skip
        return StepLosses(step, img, feat, adv, tot, d_real, d_fake, code_err, train_d, train_g)

    # -- the loop -----------------------------------------------------------------------------
    def train(
        self,
        steps: int,
        callback: Callable[[StepLosses], None] | None = None,
        max_seconds: float | None = None,
        checkpoint_path: str | Path | None = None,
    ) -> list[StepLosses]:
        """Train until ``step_count`` reaches ``steps`` or ``max_seconds`` have passed.

        Args:
            steps: the total step count to reach (a resumed trainer continues from its step).
            callback: called on rank 0 after every step with its losses (for progress bars).
            max_seconds: wall-clock budget (rank 0's clock decides; all ranks stop together).
            checkpoint_path: where ``config.checkpoint_every`` (and the final step) write checkpoints.

        Returns:
            The losses of every step run.
        """
        cfg = self.config
        history: list[StepLosses] = []
        start = time.monotonic()
        while self.step_count < steps:
            losses = self.step()
            history.append(losses)
            if self.rank == 0 and callback is not None:
                callback(losses)
            if cfg.preview_every and self.step_count % cfg.preview_every == 0 and self.out_dir is not None:
                self.write_preview(self.out_dir / "previews" / f"step_{self.step_count:07d}.png")
            if (
                cfg.checkpoint_every
                and checkpoint_path is not None
                and self.step_count % cfg.checkpoint_every == 0
            ):
                self.save(checkpoint_path)
            if max_seconds is not None and self._stop_flag(time.monotonic() - start > max_seconds):
                break
        if checkpoint_path is not None:
            self.save(checkpoint_path)
        return history

    def _stop_flag(self, stop: bool) -> bool:
        if self.world == 1:
            return stop
        t = torch.tensor([1.0 if (stop and self.rank == 0) else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    # -- outputs ------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, rgb: torch.Tensor) -> torch.Tensor:
        """G(relu(E(x))) for RGB 0..1 images, in the generator's pixel space (G in eval mode)."""
        g = self.g_module
        was_training = g.training
        g.eval()
        try:
            code, _ = self.encode(self.to_encoder_space(rgb))
            with self._autocast():
                return g(code).float()
        finally:
            g.train(was_training)

    def write_preview(self, path: str | Path) -> None:
        """A montage of the preview images (top row, encoder crop) and their reconstructions (rank 0 only)."""
        if self.rank != 0:
            return
        from dgn.render import montage, save_png, to_uint8

        rgb = self.preview_images
        real = self.to_encoder_space(rgb)
        fake = self.reconstruct(rgb)
        tiles = [to_uint8(im, self.encoder.space) for im in real] + [
            to_uint8(im, self.generator.space) for im in fake
        ]
        labels = ["real"] * len(real) + ["G(E(x))"] * len(fake)
        save_png(path, montage(tiles, labels, columns=len(real), tile=64))

    def save(self, path: str | Path) -> None:
        """Write a resumable checkpoint (safetensors: G, D, both optimisers; JSON config/step in metadata).

        Only rank 0 writes; under DDP every rank waits until the file is complete.
        """
        if self.rank == 0:
            from safetensors.torch import save_file

            tensors: dict[str, torch.Tensor] = {}
            for prefix, module in (("G", self.g_module), ("D", self.d_module)):
                for k, v in module.state_dict().items():
                    tensors[f"{prefix}.{k}"] = v.detach().cpu().contiguous().clone()
            og, og_meta = _optimizer_tensors("optG", self.opt_g)
            od, od_meta = _optimizer_tensors("optD", self.opt_d)
            tensors.update(og)
            tensors.update(od)
            meta = {
                "format": "dgn-deepsim-checkpoint-1",
                "config": self.config.to_json(),
                "step": str(self.step_count),
                "switches": json.dumps(asdict(self.switches)),
                "optG": json.dumps(og_meta),
                "optD": json.dumps(od_meta),
                "generator": self.generator.name,
                "encoder": self.encoder.name,
            }
            path = Path(path)
            tmp = path.with_name(f".{path.name}.tmp")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        if self.world > 1:
            dist.barrier()

    def load(self, path: str | Path) -> None:
        """Restore G, D, optimisers, step and D/G switches from :meth:`save`'s file (every rank reads it).

        The checkpoint's config must equal this trainer's (a resumed run must be the same run).
        """
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
        if meta.get("format") != "dgn-deepsim-checkpoint-1":
            raise DGNError(f"{path} is not a dgn DeePSim training checkpoint")
        saved = TrainConfig.from_json(meta["config"])
        if saved != self.config:
            raise DGNError(f"{path} was written with another training config: {saved}")
        for prefix, module in (("G", self.g_module), ("D", self.d_module)):
            state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict(state)
        _load_optimizer("optG", self.opt_g, tensors, json.loads(meta["optG"]))
        _load_optimizer("optD", self.opt_d, tensors, json.loads(meta["optD"]))
        self.step_count = int(meta["step"])
        self.switches = Switches(**json.loads(meta["switches"]))


def generator_state_from_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator's state_dict from a training checkpoint (to ship it alone)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return {k[2:]: handle.get_tensor(k) for k in handle.keys() if k.startswith("G.")}  # noqa: SIM118


# ---------------------------------------------------------------------------------------------
# classifier training


@dataclass
class ClassifierEpoch:
    """Progress of :func:`train_classifier` after one epoch."""

    epoch: int
    loss: float
    accuracy: float  # training accuracy over the epoch (with augmentation and dropout)
    seconds: float


def augment(rgb: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crops (of the image reflect-padded by ``pad``) and horizontal flips, per image.

    Args:
        rgb: images (B, C, H, W).
        generator: the RNG that draws the crops and flips.

    Returns:
        Augmented images of the same shape.
    """
    b, _, h, w = rgb.shape
    padded = F.pad(rgb, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    out = torch.empty_like(rgb)
    for i in range(b):
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, :, top : top + h, left : left + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    space: spaces.PixelSpace,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
    augmentation: bool = True,
    callback: Callable[[ClassifierEpoch], None] | None = None,
    max_seconds: float | None = None,
) -> list[ClassifierEpoch]:
    """Train a classifier with AdamW, a cosine learning-rate schedule and cross-entropy.

    Args:
        model: the network (trained in place; left in eval mode).
        images: RGB 0..1 training images (N, 3, H, W), converted to ``space`` per batch.
        labels: class indices (N,).
        space: the model's input pixel space (and size).
        epochs: passes over the data; the schedule decays to 0 at the end of the last one.
        augmentation: random reflect-padded crops (4 px) and horizontal flips.
        callback: called after each epoch.
        max_seconds: stop after the epoch during which this budget ran out.

    Returns:
        Per-epoch progress.
    """
    device = torch.device(device) if device is not None else default_device()
    model.to(device).train()
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = images.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    history: list[ClassifierEpoch] = []
    start = time.monotonic()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=rng)
            loss_sum, correct = 0.0, 0
            for k in range(steps_per_epoch):
                idx = order[k * batch_size : (k + 1) * batch_size]
                rgb = images[idx]
                if augmentation:
                    rgb = augment(rgb, rng)
                x = spaces.convert(rgb.to(device), spaces.RGB01, space)
                y = labels[idx].to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == y).sum())
            record = ClassifierEpoch(epoch, loss_sum / n, correct / n, time.monotonic() - start)
            history.append(record)
            if callback is not None:
                callback(record)
            if max_seconds is not None and record.seconds > max_seconds:
                break
    model.eval()
    return history


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    space: spaces.PixelSpace,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on RGB 0..1 images.

    Returns:
        The fraction of correctly classified images.
    """
    device = torch.device(device) if device is not None else default_device()
    model.to(device).eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = spaces.convert(images[start : start + batch_size].to(device), spaces.RGB01, space)
        correct += int((model(x).argmax(1).cpu() == labels[start : start + batch_size]).sum())
    return correct / images.shape[0]
