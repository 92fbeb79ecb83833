"""The three display mappings of one run's images side by side: ``act_max`` (clip(x, -120, 120)/240 + 0.5),
``imsave`` (the same stretched per image, as the original's saved PNGs) and ``mean`` (x + mean, faithful).

    python eval/displays.py --run RUN_DIR --out docs/displays-cifar.png [--rows 10]

Regenerates each row's final image from the run's saved code with the generator its manifest names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from dgn.models import load_generator
from dgn.render import montage, save_png, to_uint8
from dgn.spaces import DISPLAYS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=10)
    args = parser.parse_args()
    manifest = json.loads((args.run / "manifest.json").read_text())
    generator = load_generator(manifest["config"]["generator"]["name"])
    rows = [r for r in manifest["rows"] if r.get("restart", 0) == 0][: args.rows]
    images, labels = [], []
    with torch.no_grad():
        for row in rows:
            image = generator(load_file(args.run / row["code"])["last"][None])[0]
            for style in DISPLAYS:
                images.append(to_uint8(image, generator.space, style))
                labels.append(f"{row['target']} {style}")
    save_png(args.out, montage(images, labels, columns=len(DISPLAYS) * 2, tile=96))
    print(f"wrote {len(rows)} rows x {len(DISPLAYS)} displays to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
