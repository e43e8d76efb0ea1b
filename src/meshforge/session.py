"""A serve session: the compiler stages a long-running server keeps warm, as one object.

Files → `pipeline.Workspace` (parse what changed, resolve, lower: a `Model` carrying its `Change`) →
`backends.Checker` (what the Envoy backend cannot express, for the keys the change names) →
`emit.xds.compiler.XdsCompiler` (the snapshot, rebuilding what the change touched) → `server.control.Result`,
which is all the server sees (it imports no compiler stage). Each stage keeps its own cache and has a
`verify()` that rebuilds from scratch and says how the two differ; `Session.verify` runs all three
(the incremental property test does after every step; `meshforge serve --verify` after every reload).
A new source of inputs (the Kubernetes API) is a new workspace feeding the same stages.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from . import backends
from .emit.xds.compiler import XdsCompiler
from .emit.xds.resources import AccessLogs
from .model import DEFAULT_NAMESPACE, Model
from .overview import mesh_overview
from .pipeline import Workspace
from .server.control import Result
from .source import Inputs


class Session:
    def __init__(self, paths: list[str], access_logs: AccessLogs | None = None,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        self.workspace = Workspace(list(paths), namespace=namespace)
        self.checker = backends.Checker(backends.get("xds"))
        self.compiler = XdsCompiler(eds=True, access_logs=access_logs)
        self._last: tuple[datetime, Model | None, Result] | None = None
        self.stages: dict[str, float] = {}  # seconds each stage took in the last compile (workspace, check, xds)

    @property
    def paths(self) -> list[str]:
        return self.workspace.paths

    def compile(self, now: datetime, changed: Iterable[str] | None = None) -> Result:
        """Every input compiled at `now`; `changed`: the only files that may differ since the last call
        (None: anything may have)."""
        t0 = time.perf_counter()
        model, diags = self.workspace.compile(now, changed)
        t1 = time.perf_counter()
        if model is not None:
            self.checker.update(model, diags)
        t2 = time.perf_counter()
        warnings = [d.to_text() for d in diags.items if d.severity == "warning"]
        if model is None or diags.has_errors:
            result = Result(None, [d.to_text() for d in diags.errors()], warnings)
            model = None
        else:
            result = Result(self.compiler.compile(model), [], warnings, model.next_expiry,
                            lambda: mesh_overview(model), lambda key: model.key(key) is not None)
        self.stages = {"workspace": t1 - t0, "check": t2 - t1, "xds": time.perf_counter() - t2}
        self._last = (now, model, result)
        return result

    def inputs(self) -> Inputs:
        """Which paths are inputs now: what the server's file watcher watches and reports."""
        return self.workspace.inputs()

    def verify(self) -> list[str]:
        """Each stage rebuilt from scratch for the last compile's inputs and clock: how its incremental
        result differs (empty: not at all)."""
        if self._last is None:
            return []
        now, model, result = self._last
        problems = self.workspace.verify()
        if model is not None:
            problems += self.checker.verify(model)
            problems += self.compiler.verify(model, result.snapshot)
        return problems
