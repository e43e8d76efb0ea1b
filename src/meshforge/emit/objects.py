"""What the Kubernetes-object backends (Istio, Gateway API) emit: one object, its file, its labels.

Input: nothing (a type and the ownership labels). Output: `KubeObject` — kind, namespace, name and the
body as plain data in a fixed key order — with where `render -o DIR` writes it and its sort order, and
`metadata()` carrying meshforge's ownership labels (CONTRACT §3.5).
"""

from __future__ import annotations

from dataclasses import dataclass

MANAGED = {"app.kubernetes.io/managed-by": "meshforge"}
SANDBOX_LABEL = "meshforge.dev/sandbox"
ROUTE_GROUP_LABEL = "meshforge.dev/route-group"


@dataclass(frozen=True)
class KubeObject:
    kind: str
    namespace: str
    name: str
    body: dict

    @property
    def path(self) -> str:
        """Where `render -o DIR` writes it."""
        return f"{self.namespace}/{self.kind.lower()}-{self.name}.yaml"

    def sort_key(self) -> tuple:
        return (self.namespace, self.kind, self.name)


def metadata(name: str, namespace: str, labels: dict | None = None) -> dict:
    return {"name": name, "namespace": namespace, "labels": {**MANAGED, **(labels or {})}}


def owner_label(owner_kind: str, owner: str) -> dict:
    """The label that ties an object to the sandbox (or route group) it exists for."""
    return {SANDBOX_LABEL if owner_kind == "Sandbox" else ROUTE_GROUP_LABEL: owner}
