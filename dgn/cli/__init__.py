"""The ``dgn`` command line: one module per command, argument parsing and printing only.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; the work is done
by the library, which reports progress through callbacks (the bars live in :mod:`dgn.cli.common`). Bad
input gives one line on stderr (``dgn: error: ...``), exit status 2, and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dgn.cli.common import Parser
from dgn.errors import DGNError
from dgn.files import check_writable

# command -> module of dgn.cli, in the order --help lists them
COMMANDS = {
    "demo": "demo",
    "synthesize": "synthesize",
    "pair": "pair",
    "baseline": "baseline",
    "evolve": "evolve",
    "audit": "audit",
    "topk": "topk",
    "atlas": "atlas",
    "video": "video",
    "inspect": "inspect",
    "layers": "layers",
    "bounds": "bounds",
    "weights": "weights",
    "convert": "convert",
}
FILE_OUTPUTS = {"bounds", "convert"}  # commands whose --out names a file; every other --out is a folder


def command_module(name: str):
    """The module of command ``name``."""
    return importlib.import_module(f"dgn.cli.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = Parser(prog="dgn", description="Preferred inputs of neurons through a deep generator network prior.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        module = command_module(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dgn`` console script."""
    finished = False
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "out", None):
            check_writable(args.out, folder=args.command not in FILE_OUTPUTS)
        if getattr(args, "precision", None) == "bf16":
            from dgn.throughput import bf16_warning

            note = bf16_warning(getattr(args, "device", "auto"))
            if note:
                print(f"dgn: warning: {note}", file=sys.stderr)
        code = command_module(args.command).run(args)
        finished = code == 0
        return code
    except DGNError as err:
        print(f"dgn: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dgn layers caffenet | head`
        sys.stderr.close()
        return 0
    except OSError as err:  # a file that vanished or a full disk mid-run: say which, without a traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"dgn: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgn: interrupted; finished rows are saved (use --resume)", file=sys.stderr)
        return 130
    finally:
        if "dgn.distributed" in sys.modules:  # only a command that may have joined a torchrun group
            sys.modules["dgn.distributed"].leave_world(finished)


if __name__ == "__main__":
    sys.exit(main())
