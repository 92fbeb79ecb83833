"""The notebooks in notebooks/ run top to bottom with the Python API, and are kept without outputs in git."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_is_a_tour():
    assert [p.name for p in NOTEBOOKS] == ["tour.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_has_no_outputs(path, tmp_path, monkeypatch, one_thread):
    notebook = json.loads(path.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "a notebook without code"
    for cell in code:  # outputs stripped in git (nbstripout-style)
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {cell.get('id')} keeps outputs"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DGN_NOTEBOOK_STEPS", "40")  # the notebook's own steps are the original's 200
    namespace: dict = {"__name__": "__main__"}
    for cell in code:
        source = "".join(cell["source"])
        try:
            exec(compile(source, f"{path.name}:{cell.get('id')}", "exec"), namespace)  # noqa: S102 (our own notebook)
        except Exception as err:  # name the failing cell
            raise AssertionError(f"cell {cell.get('id')} of {path.name} failed: {err!r}\n{source}") from err
    # what the tour claims: the ten output units rose, and the pair row reports both units
    result = namespace["result"]
    assert len(result.rows) == 10 and bool((result.act_end > result.act_start).all())
    assert namespace["both"].pair_end.shape == (1, 2)
