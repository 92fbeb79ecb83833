"""DeePSim training: losses, the D/G pausing rule, learning, checkpoints, DDP (tiny nets, CPU)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from dgn.errors import DGNError
from dgn.models import Classifier, Generator
from dgn.nets.discriminator import DeePSimDiscriminator
from dgn.nets.toy import CIFAR_CAFFE_32, CifarCaffeNet, CifarGenerator, generator_space
from dgn.training import (
    DeePSimTrainer,
    Switches,
    TrainConfig,
    euclidean_loss,
    evaluate_classifier,
    generator_state_from_checkpoint,
    train_classifier,
    update_switches,
)

CODE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_images(n: int = 32) -> torch.Tensor:
    """RGB 0..1 images: gradients and blobs that vary smoothly with the index."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    out = []
    for a in torch.linspace(0, 1, n):
        blob = torch.exp(-((xx - a) ** 2 + (yy - 0.5) ** 2) * 20)
        out.append(torch.stack([xx * a + yy * (1 - a), blob, 1 - a + 0 * xx]))
    return torch.stack(out).clamp(0, 1)


def tiny_world(seed: int = 0, g_seed: int | None = None):
    torch.manual_seed(seed)
    enc_net = CifarCaffeNet(channels=(8, 8, 16, 16, 8), fc_width=CODE).eval()
    encoder = Classifier(enc_net, CIFAR_CAFFE_32, "tiny-enc")
    torch.manual_seed(seed if g_seed is None else g_seed)
    gen = Generator(CifarGenerator(CODE, 64, 16), generator_space(32), (CODE,), "tiny-gen")
    disc = DeePSimDiscriminator(CODE, ((8, 3, 2, 1), (16, 3, 2, 1)), (32,), 32, input_scale=1 / 64)
    return encoder, gen, disc


def make_trainer(config: TrainConfig, seed: int = 0, g_seed: int | None = None, **kwargs) -> DeePSimTrainer:
    encoder, gen, disc = tiny_world(seed, g_seed)
    dataset = torch.utils.data.TensorDataset(smooth_images())
    return DeePSimTrainer(encoder, gen, disc, dataset, config, device="cpu", **kwargs)


def test_euclidean_loss_is_caffes_sum_over_twice_the_batch():
    a = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    assert euclidean_loss(a, torch.zeros_like(a)).item() == pytest.approx((1 + 4 + 9) / 4)
    assert euclidean_loss(a[:1], torch.zeros(1, 2)).item() == pytest.approx(5 / 2)


@pytest.mark.parametrize(
    "state,losses,expected",
    [
        (Switches(True, True), (0.01, 0.02, 1.0), Switches(False, True)),  # r = 0.03 < 0.1: freeze D
        (Switches(True, True), (0.1, 0.1, 1.0), Switches(True, True)),  # r = 0.2: nothing changes
        (Switches(False, True), (0.1, 0.1, 1.0), Switches(False, True)),  # 0.1 < r < 0.5: D stays frozen
        (Switches(False, True), (0.3, 0.3, 1.0), Switches(True, True)),  # r = 0.6 > 0.5: resume D
        (Switches(True, True), (6.0, 6.0, 1.0), Switches(True, False)),  # r = 12 > 10: freeze G
        (Switches(True, False), (6.0, 6.0, 1.0), Switches(True, False)),  # still > 10: G stays frozen
        (Switches(True, False), (2.0, 2.0, 1.0), Switches(True, True)),  # r = 4 < 10: G resumes
    ],
)
def test_pausing_rule(state, losses, expected):
    assert update_switches(state, *losses) == expected
    assert state == Switches(*[state.train_d, state.train_g])  # the input is not modified


def test_pausing_thresholds_are_configurable():
    assert update_switches(Switches(), 0.1, 0.1, 1.0, d_freeze_below=0.3) == Switches(False, True)


def test_a_few_steps_lower_the_reconstruction_error():
    trainer = make_trainer(TrainConfig(batch_size=8, lambda_adv=1.0, lr=1e-3))
    images = smooth_images()
    x = trainer.to_encoder_space(images)
    before = euclidean_loss(trainer.reconstruct(images), x).item()
    history = trainer.train(40)
    after = euclidean_loss(trainer.reconstruct(images), x).item()
    assert len(history) == 40 and trainer.step_count == 40
    assert after < 0.7 * before  # measured: about 0.51
    assert history[-1].code_rel_err < history[0].code_rel_err


def test_checkpoint_resume_gives_identical_next_steps(tmp_path):
    cfg = TrainConfig(batch_size=8, lambda_adv=1.0)
    a = make_trainer(cfg)
    a.train(5)  # 5 steps with 4 per epoch: the resumed run crosses into a new epoch order
    path = tmp_path / "ck.safetensors"
    a.save(path)
    b = make_trainer(cfg, g_seed=123)  # another initialisation: everything must come from the file
    b.load(path)
    assert b.step_count == 5
    after_a = [a.step() for _ in range(4)]
    after_b = [b.step() for _ in range(4)]
    assert after_a == after_b
    for (ka, va), (kb, vb) in zip(
        a.g_module.state_dict().items(), b.g_module.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    for group_a, group_b in zip(
        a.opt_d.state_dict()["state"].values(), b.opt_d.state_dict()["state"].values(), strict=True
    ):
        assert torch.equal(group_a["exp_avg_sq"], group_b["exp_avg_sq"])
    assert set(generator_state_from_checkpoint(path)) == set(a.g_module.state_dict())


def test_resuming_with_another_config_is_refused(tmp_path):
    a = make_trainer(TrainConfig(batch_size=8))
    a.save(tmp_path / "ck.safetensors")
    b = make_trainer(TrainConfig(batch_size=8, lambda_img=1e-3))
    with pytest.raises(DGNError, match="another training config"):
        b.load(tmp_path / "ck.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DGNError, match="not a dgn DeePSim"):
        b.load(tmp_path / "other.safetensors")


def test_paused_networks_do_not_change():
    trainer = make_trainer(TrainConfig(batch_size=8))
    d0 = {k: v.clone() for k, v in trainer.d_module.state_dict().items()}
    g0 = {k: v.clone() for k, v in trainer.g_module.state_dict().items()}
    trainer.switches = Switches(train_d=False, train_g=True)
    losses = trainer.step()
    assert not losses.train_d
    assert all(torch.equal(v, trainer.d_module.state_dict()[k]) for k, v in d0.items())
    assert not all(torch.equal(v, trainer.g_module.state_dict()[k]) for k, v in g0.items())
    trainer.switches = Switches(train_d=True, train_g=False)
    g1 = {k: v.clone() for k, v in trainer.g_module.state_dict().items()}
    trainer.step()
    assert all(torch.equal(v, trainer.g_module.state_dict()[k]) for k, v in g1.items())
    assert all(p.requires_grad for p in trainer.d_module.parameters())


def test_bf16_autocast_steps_run_and_keep_float32_weights():
    trainer = make_trainer(TrainConfig(batch_size=8, bf16=True))
    losses = trainer.train(2)
    assert all(torch.isfinite(torch.tensor([s.total, s.d_real, s.d_fake])).all() for s in losses)
    assert all(p.dtype == torch.float32 for p in trainer.g_module.parameters())


def test_previews_are_written(tmp_path):
    trainer = make_trainer(TrainConfig(batch_size=8, preview_every=2, preview_count=4), out_dir=tmp_path)
    trainer.train(2)
    assert (tmp_path / "previews" / "step_0000002.png").stat().st_size > 100


def test_train_classifier_learns_a_colour_task():
    torch.manual_seed(0)
    n = 64
    labels = torch.arange(n) % 2
    images = torch.rand(n, 3, 32, 32) * 0.3
    images[labels == 1, 0] += 0.6  # class 1 is reddish
    images[labels == 0, 2] += 0.6  # class 0 is bluish
    model = CifarCaffeNet(num_classes=2, channels=(8, 8, 16, 16, 8), fc_width=32)
    history = train_classifier(
        model, images, labels, CIFAR_CAFFE_32, epochs=6, batch_size=16, lr=3e-3, device="cpu"
    )
    assert len(history) == 6
    assert evaluate_classifier(model, images, labels, CIFAR_CAFFE_32, device="cpu") > 0.95
    assert not model.training


# ---------------------------------------------------------------------------------------------
# DDP on CPU: 2 processes, gloo


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # Each rank starts from a different G: DDP must broadcast rank 0's weights at wrap time.
        trainer = make_trainer(TrainConfig(batch_size=4, lambda_adv=1.0), g_seed=rank)
        indices = trainer._batch_indices(0)
        history = trainer.train(2)
        state = {f"G.{k}": v.contiguous() for k, v in trainer.g_module.state_dict().items()}
        state["batch0"] = torch.tensor(indices)
        state["img"] = torch.tensor([s.img for s in history])
        save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))
        trainer.save(os.path.join(out_dir, "ck.safetensors"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_keep_identical_generators(tmp_path):
    mp.start_processes(
        _ddp_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    g_keys = [k for k in r0 if k.startswith("G.")]
    assert all(torch.equal(r0[k], r1[k]) for k in g_keys)
    # the ranks saw different images, and their averaged losses agree
    assert set(r0["batch0"].tolist()).isdisjoint(r1["batch0"].tolist())
    assert torch.equal(r0["img"], r1["img"])
    # the weights moved away from rank 0's initialisation
    fresh = make_trainer(TrainConfig(batch_size=4), g_seed=0).g_module.state_dict()
    assert not all(torch.equal(fresh[k[2:]], r0[k]) for k in g_keys)
    assert (tmp_path / "ck.safetensors").is_file()
