"""Folders are layers: imports point one way, and no module imports itself back through others.

Each package of ``cdf_pipeline`` (and each of its top-level modules, and the generator) has one
layer, shared by every module in it: :data:`LAYERS` lists them bottom up, and
``docs/architecture.md`` draws the same table. A module may import from its own layer or below,
never above, and no set of modules may import each other in a circle, inside one package or
across packages. Imports are read with ``ast`` (top-level, inside functions and under
``TYPE_CHECKING``); nothing is executed.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {name: REPO / "src" / name for name in ("cdf_pipeline", "cdf_generator")}

#: The layers, bottom up. An entry is a package, a top-level module of ``cdf_pipeline``, or the
#: generator; never a module inside a package, which has its package's layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0: the package's __init__ (only __version__), its errors and exit codes, URI kinds
    (
        "cdf_pipeline",
        "cdf_pipeline.exceptions",
        "cdf_pipeline.exit_codes",
        "cdf_pipeline.locations",
    ),
    # 1: the contracts (everything derives from them), tenant ids, settings
    ("cdf_pipeline.contracts", "cdf_pipeline.tenants", "cdf_pipeline.config"),
    # 2: I/O and observability that know no table: files, jars, telemetry, PostgreSQL
    (
        "cdf_pipeline.storage",
        "cdf_pipeline.jars",
        "cdf_pipeline.telemetry",
        "cdf_pipeline.postgres",
    ),
    # 3: pure transforms, the run's record, the store watchdog
    ("cdf_pipeline.quality", "cdf_pipeline.run_record", "cdf_pipeline.store_watch"),
    # 4: reading raw files, the tables, the session, the checks before it; the generator
    (
        "cdf_pipeline.ingest",
        "cdf_pipeline.lakehouse",
        "cdf_pipeline.spark",
        "cdf_pipeline.preflight",
        "cdf_generator",
    ),
    # 5: a tenant's run, landing, the data-quality report
    ("cdf_pipeline.pipeline", "cdf_pipeline.landing", "cdf_pipeline.dq_report"),
    # 6: each command's course from settings (preflight, session, work, result)
    ("cdf_pipeline.orchestration",),
    # 7: the entry points
    ("cdf_pipeline.cli", "cdf_pipeline.demo"),
)
RANK = {unit: layer for layer, units in enumerate(LAYERS) for unit in units}


def modules(roots: Mapping[str, Path]) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module under each root (a package's ``__init__`` is the
    package's own name)."""
    for package, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Known modules imported (``from pkg import mod`` counts as ``pkg.mod``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import counts from the module's package (its own name for an __init__).
            drop = node.level - 1 if is_package else node.level
            base = module.split(".")[: len(module.split(".")) - drop] if node.level else []
            name = ".".join([*base, node.module or ""]).strip(".")
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                found.add(sub if sub in known else name)
    return {n for n in found if n in known and n != module}


def read_graph(roots: Mapping[str, Path]) -> dict[str, set[str]]:
    """Each module and the modules it imports."""
    paths = dict(modules(roots))
    known = set(paths)
    return {name: imports(path, name, known) for name, path in paths.items()}


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every set of two or more modules that import each other in a circle (Tarjan's strongly
    connected components), each sorted; wherever they are, one package or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(cycles)


def unit(module: str) -> str:
    """The package or top-level module whose layer ``module`` has."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "cdf_pipeline" else parts[0]


GRAPH = read_graph(ROOTS)


def layer(module: str) -> int:
    return RANK[unit(module)]


def test_every_package_has_a_layer_and_every_layer_names_a_package() -> None:
    units = {unit(m) for m in GRAPH}
    assert units - set(RANK) == set(), f"add these to LAYERS in {__file__}"
    assert set(RANK) - units == set(), "LAYERS names packages or modules that no longer exist"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module: str) -> None:
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports higher layers: {upward}"


def test_no_import_cycles() -> None:
    assert find_cycles(GRAPH) == []


def test_a_cycle_inside_one_package_is_found() -> None:
    graph = {
        "p.a": {"p.b"},
        "p.b": {"p.c"},
        "p.c": {"p.a", "q"},
        "p": {"p.a"},  # a package's face importing its own module is no cycle by itself
        "q": set(),
    }
    assert find_cycles(graph) == [["p.a", "p.b", "p.c"]]
    assert find_cycles({**graph, "p.c": {"q"}}) == []


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text(
        textwrap.dedent(
            """\
            def later() -> None:
                from pkg.a import something
            """
        )
    )
    (package / "c.py").write_text("from . import a\n")
    graph = read_graph({"pkg": package})
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b"]]
