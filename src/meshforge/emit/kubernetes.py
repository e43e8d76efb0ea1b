"""Kubernetes backend: the objects lowering generated (workload forks) → YAML files.

Input: `Model.generated`. Output: {"<namespace>/<kind>-<name>.yaml": text}, one object per file, sorted.
An expired sandbox generates nothing, so `kubectl apply --prune` (or Argo CD / Flux pruning) removes its
workload. The objects themselves are built by `lower.workload_forks`.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..model import Model
from .objects import Rendered


def render_files(model: Model, diags: Diagnostics) -> list[Rendered]:
    return [Rendered(f"{o.namespace}/{o.kind.lower()}-{o.name}.yaml", None,
                     (o.group, o.kind, o.namespace, o.name), o.origin, body=o.body) for o in model.generated]
