"""A simulated recording rig for the closed-loop tests: it answers ``dgn evolve --scorer files`` generations
with a CIFAR-world unit (``cifar-caffenet`` fc8, the target's unit) plus noise seeded by the image's pixels,
so the same image always gets the same score (and an in-process scorer can reproduce it).

    python -m tests.rig LOOP_DIR LOG [--die-at N] [--stop-file PATH]

Each answered generation is appended to LOG. ``--die-at N``: exit hard (a crash) on seeing the N-th
generation (counting from 0) before answering it. The rig stops when ``--stop-file`` exists.
"""

from __future__ import annotations

import argparse
import os
import time
import zlib
from pathlib import Path

import numpy as np
import torch

NOISE_SD = 1.0


def rig_responses(images: np.ndarray, classifier=None) -> np.ndarray:
    """The rig's responses (N, 10): cifar-caffenet's fc8 to ``images`` (uint8 RGB), plus one N(0, 1) draw per
    image from a generator seeded by the image's bytes (the same image always gets the same responses)."""
    from dgn import spaces
    from dgn.models import load_classifier

    classifier = classifier or load_classifier("cifar-caffenet")
    rgb = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        logits = classifier.module(spaces.from_rgb01(rgb, classifier.space)).double().numpy()
    noise = np.array([np.random.RandomState(zlib.crc32(image.tobytes())).normal(0, NOISE_SD) for image in images])
    return logits + noise[:, None]


def main() -> None:
    from dgn.models import load_classifier
    from dgn.scorers import answer_generation, pending_generations

    parser = argparse.ArgumentParser()
    parser.add_argument("loop")
    parser.add_argument("log")
    parser.add_argument("--die-at", type=int, default=None)
    parser.add_argument("--stop-file", default=None)
    args = parser.parse_args()
    loop, log = Path(args.loop), Path(args.log)
    loop.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier("cifar-caffenet")
    seen = 0
    while not (args.stop_file and Path(args.stop_file).exists()):
        for generation in pending_generations(loop):
            if args.die_at is not None and seen == args.die_at:
                os._exit(3)
            answer_generation(generation, lambda images, entries: [
                row[int(e["target"].rsplit(":", 1)[1])] for row, e in zip(rig_responses(images, classifier), entries)])
            with log.open("a") as f:
                f.write(generation.name + "\n")
            seen += 1
        time.sleep(0.05)


if __name__ == "__main__":
    main()
