"""Train the offline video world's LRCN (``video-lrcn-shapes``) on procedural moving-shapes clips.

Data (``dgn.data_video``): 8 classes that differ only by motion (left, right, up, down, clockwise,
anticlockwise, grow, shrink), 16 frames of 32x32 each. Training clips come from ``--seed``, held-out
clips from ``--seed + 1`` (disjoint draws). The net is ``dgn.nets.lrcn.lrcn_shapes``: LRCN's structure
(conv1..conv5 with ceil-mode pools and LRN, fc6, an LSTM, fc8 at every step) on the CIFAR world's
pixel space (Caffe BGR, 0..255 minus the ImageNet mean), so ``cifar-deepsim-fc6`` can drive it.

Two stages, as the released LRCN (whose trunk was pretrained on ImageNet before the LSTM was trained):

1. Trunk pretraining on single frames: conv1..fc6 and a linear head regress the shape's state in each
   training frame (position on the toroidal frame as cos/sin, log radius, orientation as cos/sin of the
   angle times the shape's rotational symmetry) and classify its shape. Trained from scratch on clips
   alone, the whole net sat at chance (loss ln 8) for 9 epochs of 4,000 clips: the classes differ only by
   frame order, and neither the trunk nor the LSTM gets a useful gradient before the other has learned.
2. The LSTM and fc8 on whole clips, the trunk frozen: cross-entropy at every time step but the first
   (every frame carries the clip's label, as in LRCN training; the first step has seen no motion); Adam
   with a cosine schedule.

Held-out accuracy: argmax of the mean softmax over the clip's steps (the LRCN evaluation). The report also gives the frame-order probe on the held-out clips: the probability
of the true class for the clips in order, shuffled and reversed, per class.

Deterministic for a given seed and thread count (fixed seeds, single process). Run time on 2 shared
CPU cores, nice'd: see the report (``seconds``).

Usage:
    nice -n 10 python training/train_video_world.py --out dgn/pretrained --work /tmp/video-world
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgn import spaces
from dgn.data_video import FRAME_SIZE, SHAPE_CLASSES, SHAPES, clips_to_tensor, frame_states, make_clips
from dgn.files import atomic_write, atomic_write_json
from dgn.nets.lrcn import SHAPES_SPACE, lrcn_shapes


def to_space(frames_rgb01: torch.Tensor) -> torch.Tensor:
    """(T, N, 3, H, W) RGB 0..1 -> the model's Caffe BGR space."""
    t, n = frames_rgb01.shape[:2]
    flat = spaces.convert(frames_rgb01.reshape(t * n, *frames_rgb01.shape[2:]), spaces.RGB01, SHAPES_SPACE)
    return flat.view(t, n, *flat.shape[1:])


@torch.no_grad()
def clip_probabilities(model, clips: np.ndarray, order: str = "original", seed: int = 0, batch: int = 100) -> torch.Tensor:
    """Mean softmax over steps per clip (N, K), with the frames in order, shuffled (seeded) or reversed."""
    model.eval()
    frames = clips.shape[1]
    rng = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(clips), batch):
        x = to_space(clips_to_tensor(clips[start : start + batch]))
        if order == "reversed":
            x = x.flip(0)
        elif order == "shuffled":
            x = x[torch.randperm(frames, generator=rng)]
        out.append(torch.softmax(model(x), -1).mean(0))
    return torch.cat(out)


def state_targets(states: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame states (..., 5) of ``frame_states`` -> regression targets (..., 7) and shape indices (...)."""
    x, y, radius, angle, shape = (states[..., i] for i in range(5))
    symmetry = np.where(shape == SHAPES.index("bar"), 2.0, 1.0)  # a bar looks the same turned by 180 degrees
    turn = np.radians(angle) * symmetry
    regress = np.stack([np.cos(2 * np.pi * x / FRAME_SIZE), np.sin(2 * np.pi * x / FRAME_SIZE),
                        np.cos(2 * np.pi * y / FRAME_SIZE), np.sin(2 * np.pi * y / FRAME_SIZE),
                        (np.log(radius) - 1.7) / 0.5, np.cos(turn), np.sin(turn)], -1)
    return torch.tensor(regress, dtype=torch.float32), torch.tensor(shape, dtype=torch.long)


def pretrain_trunk(model, clips: np.ndarray, states: np.ndarray, epochs: int, batch: int, lr: float,
                   rng: np.random.Generator, start: float) -> list[dict]:
    """Stage 1: conv1..fc6 plus a linear head learn each frame's shape state (see the module docstring)."""
    regress, shape = (t.reshape(-1, *t.shape[2:]) for t in state_targets(states))
    frames = clips.reshape(-1, *clips.shape[2:])
    head = torch.nn.Linear(model.fc6.out_features, regress.shape[-1] + len(SHAPES))
    trunk = [p for n, p in model.named_parameters() if not n.startswith(("lstm.", "fc8."))]
    optimiser = torch.optim.Adam(trunk + list(head.parameters()), lr=lr)
    history = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(frames))
        total, seen = 0.0, 0
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            x = to_space(clips_to_tensor(frames[idx][:, None]))[0]
            out = head(model.features(x))
            loss = (torch.nn.functional.mse_loss(out[:, : regress.shape[-1]], regress[idx])
                    + torch.nn.functional.cross_entropy(out[:, regress.shape[-1] :], shape[idx]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        history.append({"epoch": epoch + 1, "state_loss": round(total / seen, 4)})
        print(f"trunk epoch {epoch + 1}: state loss {total / seen:.3f} ({time.monotonic() - start:.0f} s)", flush=True)
    return history


def order_probe_report(model, clips: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """Per class: mean probability of the true class, and accuracy, in order / shuffled / reversed."""
    report: dict = {}
    labels_t = torch.from_numpy(labels)
    for order in ("original", "shuffled", "reversed"):
        probs = clip_probabilities(model, clips, order, seed)
        true_p = probs[torch.arange(len(labels)), labels_t]
        pred = probs.argmax(1)
        per_class = {}
        for c, name in enumerate(SHAPE_CLASSES):
            mask = labels_t == c
            top = torch.bincount(pred[mask], minlength=len(SHAPE_CLASSES)).argmax()
            per_class[name] = {"p_true": round(float(true_p[mask].mean()), 4),
                               "accuracy": round(float((pred[mask] == c).float().mean()), 4),
                               "most_predicted": SHAPE_CLASSES[int(top)]}
        report[order] = {"accuracy": round(float((pred == labels_t).float().mean()), 4),
                         "p_true": round(float(true_p.mean()), 4), "per_class": per_class}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dgn" / "pretrained", help="where the safetensors go")
    parser.add_argument("--work", type=Path, default=Path("video-world-work"), help="report.json goes here")
    parser.add_argument("--train-clips", type=int, default=4000)
    parser.add_argument("--heldout-clips", type=int, default=800)
    parser.add_argument("--trunk-epochs", type=int, default=8, help="stage 1: single-frame state pretraining")
    parser.add_argument("--trunk-batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=15, help="stage 2: LSTM and fc8 on clips, trunk frozen")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lstm-lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.monotonic()
    train_x, train_y = make_clips(args.train_clips, args.seed)
    held_x, held_y = make_clips(args.heldout_clips, args.seed + 1)
    print(f"data: {len(train_y)} train / {len(held_y)} held-out clips in {time.monotonic() - start:.0f} s", flush=True)

    model = lrcn_shapes(len(SHAPE_CLASSES))
    rng = np.random.default_rng(args.seed)
    trunk_history = pretrain_trunk(model, train_x, frame_states(args.train_clips, args.seed), args.trunk_epochs,
                                   args.trunk_batch_size, args.lr, rng, start)
    sequence_part = ("lstm.", "fc8.")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(sequence_part))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lstm_lr)
    steps_per_epoch = math.ceil(len(train_y) / args.batch_size)
    total = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(train_y))
        running, seen = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = to_space(clips_to_tensor(train_x[idx]))
            y = torch.from_numpy(train_y[idx])
            logits = model(x)[1:]  # (T-1, N, K): every step carries the clip's label, but step 0 has seen no motion
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(logits.shape[0]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # LRCN's solver clips gradients at 5
            optimiser.step()
            schedule.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
        probs = clip_probabilities(model, held_x)
        accuracy = float((probs.argmax(1) == torch.from_numpy(held_y)).float().mean())
        history.append({"epoch": epoch + 1, "train_loss": round(running / seen, 4), "heldout_accuracy": round(accuracy, 4)})
        print(f"epoch {epoch + 1}: loss {running / seen:.3f}, held-out accuracy {accuracy:.3f} "
              f"({time.monotonic() - start:.0f} s)", flush=True)

    model.eval()
    probe = order_probe_report(model, held_x, held_y, args.seed)
    accuracy = probe["original"]["accuracy"]
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"architecture": "video-lrcn-shapes", "heldout_accuracy": f"{accuracy:.4f}",
            "heldout_clips": str(len(held_y)), "train_clips": str(len(train_y)), "epochs": str(args.epochs),
            "trunk_epochs": str(args.trunk_epochs),
            "seed": str(args.seed), "classes": ",".join(SHAPE_CLASSES)}
    atomic_write(args.out / "video-lrcn-shapes.safetensors", lambda tmp: save_file(state, str(tmp), metadata=meta))
    report = {"heldout_accuracy": accuracy, "trunk_history": trunk_history, "history": history, "order_probe": probe, "args": {k: str(v) for k, v in vars(args).items()},
              "seconds": round(time.monotonic() - start, 1)}
    atomic_write_json(args.work / "report.json", report)
    print(f"held-out accuracy {accuracy:.3f}; order probe p(true): original {probe['original']['p_true']:.3f}, "
          f"shuffled {probe['shuffled']['p_true']:.3f}, reversed {probe['reversed']['p_true']:.3f}")
    print(f"wrote {args.out / 'video-lrcn-shapes.safetensors'} and {args.work / 'report.json'}")


if __name__ == "__main__":
    main()
