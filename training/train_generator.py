"""Train a DeePSim generator prior for any encoder of the registry on any image folder.

The encoder (``--encoder``, a classifier name of ``dgn.models``) is frozen; the generator
(``--generator``, a generator architecture of ``dgn.models``, trained from scratch) learns to map
the encoder's post-ReLU ``--code-layer`` back to the image, with the image, ``--comparator-layer``
feature and adversarial losses (defaults: the original 2e-6 / 0.01 / 100, Adam 2e-4, the D/G
pausing rule). Images are resized (shorter side) and centre-cropped to ``--image-size``, then
converted to the encoder's pixel space with its crop.

Checkpoints (``<out>/checkpoint.safetensors``) are resumable with ``--resume``; previews of
reconstructions land in ``<out>/previews``; the final generator weights in ``<out>/generator.safetensors``.

Multi-GPU: ``torchrun --nproc_per_node=N training/train_generator.py ...`` (DDP; NCCL on GPUs,
gloo on CPU). ``--batch-size`` is per process.

Example (the real DGN-AM setting, needs the CaffeNet weights and ImageNet):
    torchrun --nproc_per_node=8 training/train_generator.py --encoder caffenet --generator deepsim-fc6 \\
        --images /data/imagenet/train --image-size 256 --steps 500000 --bf16 --out runs/fc6
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgn import models
from dgn.data import ImageFolderDataset
from dgn.nets.discriminator import DeePSimDiscriminator
from dgn.training import DeePSimTrainer, StepLosses, TrainConfig, default_device, rgb_transform


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", required=True, help=f"one of {', '.join(models.names('classifier'))}")
    parser.add_argument("--generator", required=True, help=f"one of {', '.join(models.names('generator'))}")
    parser.add_argument("--images", required=True, type=Path, help="image folder (root/<class>/... or flat)")
    parser.add_argument(
        "--image-size", type=int, default=256, help="side of the images before the encoder's crop"
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.safetensors")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--random-encoder", action="store_true", help="seeded random encoder weights (smoke tests)"
    )
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    defaults = TrainConfig()
    parser.add_argument("--code-layer", default=defaults.code_layer)
    parser.add_argument("--comparator-layer", default=defaults.comparator_layer)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--lambda-img", type=float, default=defaults.lambda_img)
    parser.add_argument("--lambda-feat", type=float, default=defaults.lambda_feat)
    parser.add_argument("--lambda-adv", type=float, default=defaults.lambda_adv)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--preview-every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    args = parser.parse_args(argv)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device(args.device) if args.device else default_device()
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    rank = dist.get_rank() if distributed else 0
    try:
        encoder = models.load_classifier(
            args.encoder, random_weights=args.random_encoder, weights_dir=args.weights_dir
        )
        torch.manual_seed(args.seed)
        generator = models.load_generator(args.generator, random_weights=True, seed=args.seed)
        code_size = int(torch.tensor(generator.code_shape).prod())
        size = encoder.space.size or (args.image_size, args.image_size)
        disc = (
            DeePSimDiscriminator.imagenet(code_size)
            if min(size) >= 128
            else DeePSimDiscriminator.small(code_size)
        )
        dataset = ImageFolderDataset(args.images, transform=rgb_transform(args.image_size))
        config = TrainConfig(
            code_layer=args.code_layer, comparator_layer=args.comparator_layer, batch_size=args.batch_size,
            lr=args.lr, lambda_img=args.lambda_img, lambda_feat=args.lambda_feat, lambda_adv=args.lambda_adv,
            bf16=args.bf16, seed=args.seed, preview_every=args.preview_every, checkpoint_every=args.checkpoint_every,
        )  # fmt: skip
        trainer = DeePSimTrainer(encoder, generator, disc, dataset, config, device, out_dir=args.out)
        checkpoint = args.out / "checkpoint.safetensors"
        if args.resume:
            trainer.load(checkpoint)
        bar = tqdm(
            total=args.steps, initial=trainer.step_count, desc="generator", unit="step", disable=rank != 0
        )

        def on_step(s: StepLosses) -> None:
            bar.update(1)
            if s.step % 10 == 0:
                bar.set_postfix(s.brief())

        max_seconds = args.minutes * 60 if args.minutes else None
        trainer.train(args.steps, on_step, max_seconds=max_seconds, checkpoint_path=checkpoint)
        bar.close()
        if rank == 0:
            state = {k: v.detach().cpu().contiguous() for k, v in trainer.g_module.state_dict().items()}
            save_file(
                state, str(args.out / "generator.safetensors"), metadata={"architecture": args.generator}
            )
            trainer.write_preview(args.out / "previews" / "final.png")
            tqdm.write(f"{trainer.step_count} steps; generator weights: {args.out / 'generator.safetensors'}")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
