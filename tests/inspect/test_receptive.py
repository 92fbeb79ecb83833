"""Receptive fields by the backward-pass method, and ``dgn inspect receptive-field``."""

from __future__ import annotations

from dgn.cli import main


def test_cli_prints_the_box_and_rejects_flat_layers(capsys):
    assert main(["inspect", "receptive-field", "--layer", "conv1", "--position", "0,0"]) == 0
    out = capsys.readouterr().out
    assert "receptive field" in out and "top-left (y=0, x=0)" in out
    assert main(["inspect", "receptive-field", "--layer", "fc6"]) == 2
    assert "needs (C, H, W)" in capsys.readouterr().err
    assert main(["inspect", "receptive-field", "--layer", "conv1", "--position", "a,b"]) == 2
