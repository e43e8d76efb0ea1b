"""Imports point one way: an AST scan of the package, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import meshforge

PACKAGE = Path(meshforge.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """meshforge modules that `path` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("meshforge"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("meshforge"):
                continue
            for a in node.names:  # `from . import x` imports a module x when there is one
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    return {m for m in out if m != name}


MODULES = {_module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _edges_from(prefixes: tuple[str, ...]):
    for src, targets in sorted(GRAPH.items()):
        if src.startswith(prefixes):
            for t in sorted(targets):
                yield src, t


def _is(module: str, *stages: str) -> bool:
    return any(module == f"meshforge.{s}" or module.startswith(f"meshforge.{s}.") for s in stages)


def test_the_scan_sees_lazy_imports():
    assert "meshforge.emit.istio" in GRAPH["meshforge.backends"]  # inside a function
    assert "meshforge.demo" in GRAPH["meshforge.cli"]  # imported inside the `demo` command


def test_no_import_cycles():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_emitters_import_only_the_model_and_helpers():
    forbidden = ("spec", "resolve", "pipeline", "source", "output", "cli", "server", "backends", "lower", "explain")
    bad = [(s, t) for s, t in _edges_from(("meshforge.emit",)) if _is(t, *forbidden)]
    assert bad == []


def test_the_server_imports_no_compiler_stage():
    allowed = ("server", "xdsapi")
    bad = [(s, t) for s, t in _edges_from(("meshforge.server",)) if not _is(t, *allowed)]
    assert bad == []


def test_front_end_stages_know_nothing_of_backends():
    front = ("meshforge.source", "meshforge.spec", "meshforge.resolve", "meshforge.model", "meshforge.lower",
             "meshforge.diagnostics", "meshforge.names")
    bad = [(s, t) for s, t in _edges_from(front) if _is(t, "emit", "server", "backends", "cli", "pipeline", "output")]
    assert bad == []


def test_nothing_imports_the_command_line():
    assert [s for s, ts in GRAPH.items() if "meshforge.cli" in ts] == []


def test_no_test_imports_another_test_module_or_a_benchmark():
    tests = Path(__file__).resolve().parent
    bad = []
    for path in sorted(tests.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for n in names:
                if n.split(".")[-1].startswith("test_") or n.startswith("benchmarks") or "bench_" in n:
                    bad.append((path.name, n))
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                    and node.value.id == "sys":
                bad.append((path.name, "sys.path"))
    assert bad == []


def test_only_the_session_and_serve_s_process_join_the_compiler_and_the_server():
    """The serve session assembles the stages; only serve's process (`serving`) imports it, and it reaches the
    server only for the one type that crosses the boundary (`Result`). The command line reaches serve through
    `serving` and imports no part of the server but its logging set-up."""
    assert [s for s, ts in GRAPH.items() if "meshforge.session" in ts] == ["meshforge.serving"]
    assert {t for t in GRAPH["meshforge.session"] if _is(t, "server")} == {"meshforge.server.control"}
    assert {t for t in GRAPH["meshforge.cli"] if _is(t, "server", "session")} == {"meshforge.server.control"}
    assert "meshforge.serving" in GRAPH["meshforge.cli"]


def test_no_two_modules_or_types_share_a_name():
    """A name says one thing: no two modules of the package have one file name, and no two classes one name (a
    leading underscore aside), a protocol and what implements it included (xdsapi.Snapshot / CompiledSnapshot)."""
    modules: dict[str, list[str]] = {}
    classes: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__init__.py":
            modules.setdefault(path.stem, []).append(_module_name(path))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name.lstrip("_"), []).append(f"{_module_name(path)}.{node.name}")
    assert {k: v for k, v in modules.items() if len(v) > 1} == {}
    assert {k: v for k, v in classes.items() if len(v) > 1} == {}


# Where each module's tests are when they are not in tests/test_<module>.py (each such test module imports it) ...
TESTED_IN = {
    "meshforge.emit.kubernetes": ("test_lower",),  # and test_workload_forks, through the backend table
    "meshforge.emit.objects": ("test_backends",),
    "meshforge.emit.xds.backend": ("test_preview_auth", "test_accepted_means_valid"),
    "meshforge.emit.xds.compiler": ("test_xds_compiler",),
    "meshforge.emit.xds.listeners": ("test_accepted_means_valid",),
    "meshforge.emit.xds.naming": ("test_resources", "test_bootstrap"),
    "meshforge.emit.xds.tunnel": ("test_accepted_means_valid",),
    "meshforge.preview": ("test_preview_auth",),
    "meshforge.sampleapp": ("test_compare",),
    "meshforge.spec.ports": ("test_parse",),
    "meshforge.synthetic": ("test_pipeline", "test_xds_compiler"),
    "meshforge.controller.crds": ("test_controller",),
}
# ... the modules tested only through the process that runs them (named here: what is not yet tested in process) ...
THROUGH_A_PROCESS = {
    "meshforge.controller.kube": "test_controller (`meshforge controller` on a real kube-apiserver)",
    "meshforge.controller.main": "test_controller",
}
# ... and the modules with no logic of their own to test.
NO_LOGIC = {
    "meshforge.ownership": "label names",
    "meshforge.spec.decls": "dataclasses",
    "meshforge.server.metrics": "metric declarations",
}


def _test_imports(test: str) -> set[str]:
    path = Path(__file__).resolve().parent / f"{test}.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meshforge"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_tests_mirror_modules():
    """Every module with logic has tests/test_<module>.py, or its tests are named above (and import it), or it is
    listed as tested only through a process: a new module needs one of the three."""
    tests = Path(__file__).resolve().parent
    unplaced, wrong = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        m = _module_name(path)
        if (tests / f"test_{path.stem}.py").is_file() or m in THROUGH_A_PROCESS or m in NO_LOGIC:
            continue
        if m not in TESTED_IN:
            unplaced.append(m)
        else:
            wrong += [(m, t) for t in TESTED_IN[m] if m not in _test_imports(t)]
    assert unplaced == [] and wrong == []
    listed = (*TESTED_IN, *THROUGH_A_PROCESS, *NO_LOGIC)
    assert not {m for m in listed if m not in MODULES}  # no stale entries
    assert not {m for m in listed if (tests / f"test_{m.rsplit('.', 1)[1]}.py").is_file()}  # nor needless ones
