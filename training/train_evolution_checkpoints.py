"""Checkpoints of one CIFAR-world classifier run, one per epoch, for ``dgn inspect evolution``.

Trains ``cifar-caffenet`` from scratch exactly as ``training/train_cifar_world.py`` does (the same
8,000-image training split of the 10,000 CIFAR-10 test JPEGs, ``split_indices(labels, 800, seed)``;
``dgn.training.train_classifier``: AdamW, a cosine schedule over ``--epochs``, crops and flips), but for a
few epochs, and writes ``epoch-000.safetensors`` (the initialisation) and one file after every epoch,
each with its accuracy on the 2,000 held-out images in the metadata (format ``dgn-checkpoint/1``, see
:mod:`dgn.inspect.evolution`).

Usage::

    nice python training/train_evolution_checkpoints.py --epochs 8 --out /tmp/evolution-checkpoints
    dgn inspect evolution --checkpoints /tmp/evolution-checkpoints --target fc8:0-9 --out /tmp/evolution
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from train_cifar_world import ARCHIVE, split_indices

from dgn.data import ImageFolderDataset, extract_archive, load_images
from dgn.inspect.evolution import save_checkpoint
from dgn.nets.toy import CIFAR_CAFFE_32, CIFAR_CLASSES, cifar_caffenet
from dgn.training import ClassifierEpoch, default_device, evaluate_classifier, train_classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures")
    parser.add_argument("--data", type=Path, default=Path("/tmp/dgn-cifar-data"),
                        help="where the archive is extracted (reused when already there)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoints")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: CUDA when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    root = args.data / "cifar10_test_jpg" / "test"
    if not root.is_dir():
        extract_archive(args.fixtures / ARCHIVE, args.data)
    dataset = ImageFolderDataset(root)
    if tuple(dataset.classes) != CIFAR_CLASSES or len(dataset) != 10_000:
        raise SystemExit(f"unexpected data in {root}: classes {dataset.classes}, {len(dataset)} images")
    images, labels = load_images(dataset.paths), torch.tensor(dataset.labels)
    train_idx, held_idx = split_indices(dataset.labels, 800, args.seed)
    x_train, y_train, x_held, y_held = images[train_idx], labels[train_idx], images[held_idx], labels[held_idx]

    torch.manual_seed(args.seed)  # the same initialisation as train_cifar_world.py
    model = cifar_caffenet()

    def save(epoch: int) -> float:
        accuracy = evaluate_classifier(model, x_held, y_held, CIFAR_CAFFE_32, device=device)
        save_checkpoint(args.out / f"epoch-{epoch:03d}.safetensors", model.state_dict(), "cifar-caffenet",
                        epoch, accuracy, len(held_idx))
        return accuracy

    print(f"epoch 0 (initialisation): held-out accuracy {save(0):.4f}", flush=True)
    start = time.monotonic()

    def on_epoch(e: ClassifierEpoch) -> None:
        accuracy = save(e.epoch + 1)
        model.train()  # evaluate_classifier left it in eval mode; training continues with dropout
        print(f"epoch {e.epoch + 1}: loss {e.loss:.3f}, train {e.accuracy:.4f}, held-out {accuracy:.4f} "
              f"({time.monotonic() - start:.0f} s)", flush=True)

    train_classifier(model, x_train, y_train, CIFAR_CAFFE_32, args.epochs, seed=args.seed, device=device,
                     callback=on_epoch)
    print(f"{args.epochs + 1} checkpoints -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
