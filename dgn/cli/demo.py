"""``dgn demo``: the offline tour on the shipped CIFAR-10 world."""

from __future__ import annotations

import argparse

HELP = "offline tour: DGN-AM on the shipped CIFAR-10 world, with an HTML gallery"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    p.add_argument("--quick", action="store_true", help="a fast smoke version (1 restart, 60 steps from lr 2)")
    p.add_argument("--paper", action="store_true",
                   help="the original act_max settings and 3-sigma bounds instead of the demo's measured changes")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="act_max steps (default 400; 200 with --paper)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto (default): bf16 on a CPU with AMX, fp32 elsewhere")
    p.add_argument("--images", default=None, metavar="DIR|ARCHIVE",
                   help="real CIFAR-10 images (class folders, or a tar archive of them) for the atlas's dataset "
                        "examples (default: the shared fixtures' copy when present)")
    p.add_argument("--weights-dir", default=None, help="also look here for the judge's weights (ResNet-20)")


def run(args: argparse.Namespace) -> int:
    import time

    from dgn import demo
    from dgn.cli.common import progress_bar

    demo.check_available(args.weights_dir)
    targets, restarts, steps = demo.plan(args.quick, args.restarts, args.steps, args.paper)
    start = time.time()
    with progress_bar(len(targets) * restarts * steps, "demo") as update:
        summary = demo.run_demo(args.out, args.quick, args.restarts, args.steps, args.device, args.weights_dir,
                                progress=update, paper=args.paper, images=args.images,
                                precision=args.precision)
    rows = summary["rows"]
    print(f"{'target':<10} {'class':<11} {'restarts':>8} {'act start':>10} {'act end':>9}  judge (ResNet-20)")
    for target in dict.fromkeys(r["target"] for r in rows):
        group = [r for r in rows if r["target"] == target]
        start_mean = sum(r["act_start"] for r in group) / len(group)
        end_mean = sum(r["act_end"] for r in group) / len(group)
        verdicts = ", ".join(r["judge"] for r in group if "judge" in r)
        print(f"{target:<10} {group[0].get('class', '-'):<11} {len(group):>8} {start_mean:>10.2f} {end_mean:>9.2f}  {verdicts}")
    if summary["judge_accuracy"] is not None:
        print(f"ResNet-20 (not trained by us) recognises {summary['judge_accuracy']:.0%} of the output-unit images")
    else:
        print("ResNet-20 weights not found: `dgn weights download resnet20-cifar10` to judge the images")
    atlas = summary["atlas"]
    examples = "with dataset examples" if summary["examples"] else "without dataset examples (no CIFAR-10 images found: --images)"
    print(f"atlas of {atlas['units']} units {examples}: open {atlas['index']}")
    print(f"{len(rows)} images in {time.time() - start:.0f} s ({summary['precision']}); open {summary['index']}")
    return 0
