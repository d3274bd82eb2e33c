"""Layers point one way, and no module imports itself back through others.

Reads every module's imports (top-level and inside functions) with ``ast``; nothing is executed.
contracts <- quality <- (ingest, lakehouse) <- pipeline <- (cli, jobs, demo); the generator
depends on the contracts and the storage layer, never on the pipeline or the CLI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {name: REPO / "src" / name for name in ("cdf_pipeline", "cdf_generator")}

#: Layer of each package or top-level module; a module may import only from layers <= its own.
RANK = {
    "cdf_pipeline.exceptions": 0,
    "cdf_pipeline.exit_codes": 0,
    "cdf_pipeline.contracts": 1,
    "cdf_pipeline.tenants": 1,
    "cdf_pipeline.locations": 0,
    "cdf_pipeline.config": 1,
    "cdf_pipeline.storage": 2,
    # The PostgreSQL landing source: contracts and exceptions only, so the generator can load a
    # landing database through the same connection code.
    "cdf_pipeline.postgres": 2,
    "cdf_pipeline.jars": 2,
    "cdf_pipeline.telemetry": 2,
    "cdf_pipeline.store_watch": 3,
    "cdf_pipeline.quality": 3,
    "cdf_pipeline.run_record": 3,
    "cdf_pipeline.lakehouse.landed": 3,
    "cdf_generator": 4,
    "cdf_pipeline.ingest": 4,
    "cdf_pipeline.lakehouse": 4,
    "cdf_pipeline.spark": 4,
    "cdf_pipeline.preflight": 4,
    "cdf_pipeline.pipeline": 5,
    "cdf_pipeline.landing": 5,
    # The data-quality report and the quarantine workflow: orchestration below the CLI.
    "cdf_pipeline.dq_report": 5,
    "cdf_pipeline.orchestration": 6,
    "cdf_pipeline.demo": 7,
    "cdf_pipeline.cli": 7,
    "cdf_pipeline": 0,  # the package's __init__: only __version__
}
EXCEPTIONS: dict[str, int] = {}


def modules() -> Iterator[tuple[str, Path]]:
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


PATHS = dict(modules())
KNOWN = set(PATHS)


def imports(path: Path, module: str) -> set[str]:
    """Project modules imported (``from pkg import mod`` counts as ``pkg.mod``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".")[: -node.level] if node.level else []
            name = ".".join([*base, node.module or ""]).strip(".")
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                found.add(sub if sub in KNOWN else name)
    return {n for n in found if n in KNOWN and n != module}


def layer(module: str) -> int:
    if module in EXCEPTIONS:
        return EXCEPTIONS[module]
    for prefix in sorted(RANK, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return RANK[prefix]
    raise AssertionError(f"{module} has no layer: add it to RANK in {__file__}")


GRAPH = {name: imports(path, name) for name, path in PATHS.items()}


def edges(module: str) -> set[str]:
    return GRAPH[module]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module: str) -> None:
    upward = sorted(t for t in edges(module) if layer(t) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports higher layers: {upward}"


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges(v):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            # A package __init__ re-exporting its own modules is not a cycle between concerns.
            if len(component) > 1 and len({c.rsplit(".", 1)[0] for c in component}) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"
