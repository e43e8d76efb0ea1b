"""The controller as an xDS server: the model the reconcile routes, compiled for sidecars.

Input: the gated model with endpoints bound from EndpointSlices (`readiness.bind_endpoints`), set by
the reconcile before it asks the control plane to reload. Output: what `server.control.ControlPlane`
asks of a compiler (`Compiler`): a `Result` per reload. The files-side equivalent is `session.Session`.
"""

from __future__ import annotations

from datetime import datetime

from .. import backends
from ..diagnostics import Diagnostics
from ..emit.xds.compiler import XdsCompiler
from ..emit.xds.resources import AccessLogs
from ..model import Model
from ..overview import mesh_overview
from ..server.control import Result


class _NoFiles:
    roots: list[str] = []

    def relevant(self, path: str) -> bool:
        return False

    def watched(self, directory: str) -> bool:
        return False


class ClusterCompiler:
    paths: list[str] = []

    def __init__(self, access_logs: AccessLogs | None = None):
        self.model: Model | None = None
        self.compiler = XdsCompiler(eds=True, access_logs=access_logs)
        self.checker = backends.Checker(backends.get("xds"))

    def compile(self, now: datetime, changed=None) -> Result:
        model = self.model
        if model is None:
            return Result(None, ["the cluster has not been read yet"], [])
        diags = Diagnostics()
        self.checker.update(model, diags)
        if diags.has_errors:  # the reconcile leaves refused keys out: this is a bug if it happens
            return Result(None, [d.to_text() for d in diags.errors()], [])
        return Result(self.compiler.compile(model), [], [], None, lambda: mesh_overview(model),
                      lambda key: model.key(key) is not None)

    def inputs(self) -> _NoFiles:
        return _NoFiles()

    def verify(self) -> list[str]:
        return []
