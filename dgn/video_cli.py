"""``dgn video``: preferred videos for an LRCN activity-recognition net (issue #6; being built)."""

from __future__ import annotations

import argparse

from dgn.errors import DGNError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dgn video``."""


def run(args: argparse.Namespace) -> int:
    """Run ``dgn video``."""
    raise DGNError("dgn video is not available yet")
