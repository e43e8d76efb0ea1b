"""What a backend emits: one file (`Rendered`), and for the Kubernetes-object backends (Istio, Gateway API,
Kubernetes) one object (`KubeObject`) with its ownership labels.

Input: nothing (types and the ownership labels). Output: `Rendered` — where `render -o DIR` writes a file,
its text, the identity the cluster knows the object by (group, kind, namespace, name) and the input that
made it — which `backends.render` checks before anything is written: two files with one path or one
identity, or a generated object with the identity of an input object, are errors, never an overwrite.
`KubeObject` is kind, namespace, name and the body as plain data in a fixed key order; `metadata()` carries
meshforge's ownership labels (`ownership`, CONTRACT §3.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Diagnostics, Span
from ..model import Model
from ..ownership import MANAGED
from ..yamlout import dump_yaml

Identity = tuple[str, str, str, str]  # (API group, kind, namespace, name)


@dataclass(frozen=True)
class Rendered:
    """One file a backend renders. A Kubernetes object's text is written out when first asked for (`text`):
    the controller applies `body` and never needs it (dumping YAML costs more than rendering)."""

    path: str  # relative to `render -o DIR`
    _text: str | None  # the file's text; None: `body`'s YAML, written when first read
    identity: Identity | None  # what the cluster knows it by; None: not a Kubernetes object (an Envoy config)
    origin: Span = field(default_factory=Span)  # the input that made it (a fork, an edge, a user's object)
    is_input: bool = False  # an input object itself (a user's VirtualService, as written or merged)
    body: dict | None = field(default=None, compare=False, repr=False)  # the object, as plain data

    @property
    def text(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", dump_yaml(self.body))
        return self._text


@dataclass(frozen=True)
class KubeObject:
    kind: str
    namespace: str
    name: str
    body: dict
    origin: Span = field(default_factory=Span, compare=False)
    is_input: bool = False  # the user's own object, as written or with meshforge's routes merged

    @property
    def path(self) -> str:
        """Where `render -o DIR` writes it."""
        return f"{self.namespace}/{self.kind.lower()}-{self.name}.yaml"

    @property
    def identity(self) -> Identity:
        api = str(self.body.get("apiVersion", ""))
        return (api.rsplit("/", 1)[0] if "/" in api else "", self.kind, self.namespace, self.name)

    def sort_key(self) -> tuple:
        return (self.namespace, self.kind, self.name)

    def rendered(self) -> Rendered:
        return Rendered(self.path, None, self.identity, self.origin, self.is_input, self.body)


def metadata(name: str, namespace: str, labels: dict | None = None) -> dict:
    return {"name": name, "namespace": namespace, "labels": {**MANAGED, **(labels or {})}}


def warn_cluster_protocols(model: Model, diags: Diagnostics, backend: str) -> None:
    """Istio and the Gateway API implementations read a port's protocol from the Service in the cluster: where
    a Baseline amended a forked port's protocol (a port named tcp-*, said to speak gRPC), routes for it apply
    only once that Service carries the protocol too (MF225), or keyed requests reach the baseline unnoticed."""
    for sid in model.forks_by_service:
        svc = model.service_by_id[sid]
        for p in svc.ports:
            if p.cluster_disagrees:
                where = p.cluster_origin.at() if p.cluster_origin is not None else "its manifest"
                diags.warning("MF225", f"port {p.number} of Service {sid} is {p.cluster_protocol} in the Service the "
                              f"cluster runs ({p.name or 'unnamed'}, at {where}); {backend} reads the protocol from "
                              f"there, so the routes meshforge emits for it as {p.protocol} apply only once that "
                              "Service says so", p.origin,
                              f"set appProtocol: {p.protocol.lower()} on port {p.number} in the Service's manifest "
                              f"(or name the port {p.protocol.lower()}-...)")
