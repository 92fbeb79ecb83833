"""The package's layers: nothing imports what stands above it, methods do not import each other, no cycles.

The layers, bottom up, are the ones docs/architecture.md describes; a new module must be placed here.
"""

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dgn"

LAYERS = [  # (name, module patterns relative to dgn), bottom first
    ("vocabulary", ["", "errors", "files", "spaces", "nets", "nets.*", "caffe", "caffe.net", "caffe.schema",
                    "caffe.wire", "caffe.text", "caffe.read", "caffe.modules", "caffe.builder", "caffe.state", "caffe.zoo_modules", "caffe.zoo_builders",
                    "data", "data_video", "distributed", "render", "frames", "weights"]),
    ("spine", ["layers", "targets", "receptive", "models", "caffe.lrcn", "objectives", "engine", "params", "rows",
               "regularisers", "image_grad", "encoding", "starts", "fourier", "maco", "image_settings", "evolvers", "scorers",
               "placement"]),
    ("methods", ["synthesis", "baseline", "video", "pairs", "evolve"]),
    ("built on the methods", ["outputs", "throughput", "demo", "audit", "bounds", "topk", "atlas", "training", "inspect",
                              "inspect.*"]),
    ("command line", ["cli", "cli.*", "__main__"]),
]


def _modules() -> dict[str, set[str]]:
    """Every module of dgn (dotted, relative to dgn; the package itself is "") -> the dgn modules it imports."""
    files = {p: ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix("__init__").rstrip(".")
             for p in PACKAGE.rglob("*.py")}
    known = set(files.values())
    graph = {}
    for path, name in files.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and (node.module + ".").startswith("dgn."):
                base = node.module.removeprefix("dgn").lstrip(".")
                for alias in node.names:
                    sub = f"{base}.{alias.name}".lstrip(".")
                    imported.add(sub if sub in known else base)
            elif isinstance(node, ast.ImportFrom) and node.module == "dgn":
                imported |= {a.name for a in node.names if a.name in known} or {""}
            elif isinstance(node, ast.Import):
                imported |= {a.name.removeprefix("dgn").lstrip(".") for a in node.names if a.name.split(".")[0] == "dgn"}
        graph[name] = imported - {name}
    return graph


def _layer(module: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(module, pattern) for pattern in patterns):
            return index
    raise AssertionError(f"dgn.{module} is in no layer: add it to LAYERS in {__file__}")


GRAPH = _modules()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_nothing_imports_what_stands_above_it(module):
    mine = _layer(module)
    above = [m for m in GRAPH[module] if _layer(m) > mine]
    assert not above, f"dgn.{module} ({LAYERS[mine][0]}) imports {above} from a higher layer"
    if LAYERS[mine][0] == "methods":
        siblings = [m for m in GRAPH[module] if _layer(m) == mine]
        assert not siblings, f"method dgn.{module} imports the method(s) {siblings}: share through the spine"


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in GRAPH.get(module, ()):
            if other == "" or other not in GRAPH:  # the package itself only re-exports the version and errors
                continue
            if state.get(other) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [other]))
            if other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [module])
