"""``dgn weights``: list, download and locate the registry's files."""

from __future__ import annotations

import argparse

from dgn.errors import DGNError

HELP = "the registry of pretrained files: list, download, path, table (the Markdown of pretrained/README.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "download", "path", "table"])
    p.add_argument("name", nargs="?", help="registry name (for download and path)")
    p.add_argument("--weights-dir", default=None, help="directory with files copied by hand (also $DGN_WEIGHTS_DIR)")
    p.add_argument("--force", action="store_true", help="download / convert again")


def run(args: argparse.Namespace) -> int:
    from dgn import weights

    if args.action == "list":
        print(f"{'name':<20} {'kind':<11} {'local':<6} licence")
        for row in weights.describe(args.weights_dir):
            licence = row["licence"].split(":")[0].split(";")[0]
            print(f"{row['name']:<20} {row['kind']:<11} {'yes' if row['cached'] else 'no':<6} {licence[:70]}")
        print("The DeePSim generator weights are for non-commercial research only (Dosovitskiy & Brox).")
        return 0
    if args.action == "table":
        print(weights.registry_table(), end="")
        return 0
    if not args.name:
        raise DGNError(f"weights {args.action} needs a NAME; valid: {', '.join(weights.names())}")
    if args.action == "download":
        print(weights.download(args.name, args.weights_dir, force=args.force))
        return 0
    found = weights.path(args.name, args.weights_dir)
    if found is None:
        raise DGNError(f"{args.name} is not available locally; run `dgn weights download {args.name}`")
    print(found)
    return 0
