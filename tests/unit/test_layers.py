"""The structure the README's Layout section draws, checked: imports point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import eoflow

ROOT = Path(eoflow.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at run time or for types alone (TYPE_CHECKING too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _eoflow_graph() -> dict[str, set[str]]:
    return {name: {i for i in imports if i in MODULES and i != name}
            for name, imports in IMPORTS.items()}


def _importers(prefix: str) -> set[str]:
    return {name for name, imports in IMPORTS.items()
            if any(i == prefix or i.startswith(prefix + ".") for i in imports)}


def test_no_import_cycle_even_for_types() -> None:
    graph = _eoflow_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_nothing_below_the_facade_imports_the_engine() -> None:
    # The Engine holds the user API; the parts below it receive the Runtime.
    allowed = {"eoflow", "eoflow.engine.service"}
    assert _importers("eoflow.engine.engine") <= allowed


def test_the_journal_never_imports_the_engine_or_the_cli() -> None:
    journal = {n for n in MODULES if n.startswith("eoflow.journal")}
    assert not {n for n in journal
                if any(i.startswith(("eoflow.engine", "eoflow.cli")) for i in IMPORTS[n])}


def test_each_third_party_client_has_one_home() -> None:
    assert _importers("kafka") == {"eoflow.engine.kafka.source"}
    assert _importers("rich") == {"eoflow.cli.render"}
    assert _importers("opentelemetry") == {"eoflow.engine.otel"}
    assert _importers("prometheus_client") == {"eoflow.engine.otel"}
    assert {n for n in _importers("apsw") if not n.startswith("eoflow.journal")} == set()


def test_kafka_and_scheduling_sit_above_the_runtime() -> None:
    core = {n for n in MODULES if n.startswith("eoflow.engine.")
            and not n.startswith(("eoflow.engine.kafka", "eoflow.engine.scheduling"))
            and n not in ("eoflow.engine.engine", "eoflow.engine.service",
                          "eoflow.engine.operations", "eoflow.engine.apploader")}
    upward = {n: sorted(i for i in IMPORTS[n]
                        if i.startswith(("eoflow.engine.kafka", "eoflow.engine.scheduling")))
              for n in core}
    assert {n: i for n, i in upward.items() if i} == {}
