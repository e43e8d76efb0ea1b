"""Declarations: what each input document says, before references are bound.

Input: schema-valid documents. Output: `Decls` (services with unresolved dependency references,
sandboxes, route groups, mesh settings, objects of other systems kept as written, e.g. VirtualServices). Binding happens in `resolve.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Span
from ..model import Destination, Endpoint, Port, UserObject, Workload


@dataclass(frozen=True)
class DepRef:
    ref: str  # as written: name, name.namespace or a host
    namespace: str  # the referring document's namespace
    inferred: bool
    span: Span
    detail: str = ""  # for inferred edges: where it was found (env NAME=value)


@dataclass
class ServiceDecl:
    name: str
    namespace: str
    ports: tuple[Port, ...] | None  # None: a Baseline entry that only amends an imported Service
    endpoints: tuple[Endpoint, ...] | None  # None: not set here
    workloads: tuple[Workload, ...] | None  # None: not set here
    deps: list[DepRef]
    declares_deps: bool  # an explicit dependsOn / annotation was present (even if empty)
    span: Span
    cluster_domain: str | None = None  # None: the mesh's
    source: str = "Baseline"  # "Baseline" or "Kubernetes"; a Baseline entry may amend a Kubernetes Service
    manifest: UserObject | None = None  # the Kubernetes Service as written (workload forks copy its ports)
    workload_manifests: tuple[UserObject, ...] = ()  # the workloads it selects, as written
    inference_partial: tuple[str, ...] = ()  # what env inference could not read (its dependencies stay unknown)

    @property
    def id(self) -> str:
        return f"{self.name}.{self.namespace}"


@dataclass(frozen=True)
class ForkDecl:
    ref: str
    ref_span: Span
    destination: Destination
    span: Span


@dataclass
class SandboxDecl:
    name: str
    namespace: str
    key: str
    key_span: Span
    labels: tuple[tuple[str, str], ...]
    expires_at: str | None  # as written; resolve parses it
    expires_span: Span
    forks: list[ForkDecl]
    span: Span
    not_before: str | None = None  # as written
    not_before_span: Span = field(default_factory=Span)


@dataclass
class RouteGroupDecl:
    name: str
    key: str
    key_span: Span
    members: list[tuple[str, Span]] | None  # by name
    labels: tuple[tuple[str, str], ...] | None  # or by label selector
    span: Span
    not_before: str | None = None  # as written
    not_before_span: Span = field(default_factory=Span)


@dataclass
class Settings:
    """Mesh-wide settings declared by one Baseline; None where that Baseline left the default."""

    baggage_key: str | None
    header: str | None
    cluster_domain: str | None
    span: Span


@dataclass
class EdgeDecl:
    """A Baseline's `edge` block as written; `resolve` binds the service and checks the addresses."""

    service: str
    namespace: str  # the Baseline's namespace, where a bare service name resolves
    port: int | None
    hosts: tuple[tuple[str, Span], ...]
    preview_domain: str | None
    trusted_sources: tuple[tuple[str, Span], ...]
    istio_gateway: str | None
    gateway: str | None
    span: Span  # the `edge` block
    service_span: Span
    port_span: Span
    preview_auth: dict | None = None  # as written (the schema checked its shape)
    preview_auth_span: Span = field(default_factory=Span)


@dataclass
class TunnelDecl:
    """A Baseline's `tunnel` block as written."""

    host: str
    port: int
    span: Span  # the `tunnel` block


@dataclass
class Decls:
    services: list[ServiceDecl] = field(default_factory=list)
    sandboxes: list[SandboxDecl] = field(default_factory=list)
    route_groups: list[RouteGroupDecl] = field(default_factory=list)
    settings: list[Settings] = field(default_factory=list)
    user_objects: list[UserObject] = field(default_factory=list)
    edges: list[EdgeDecl] = field(default_factory=list)
    tunnels: list[TunnelDecl] = field(default_factory=list)
    # (API group, kind, namespace, name) of every object of another system among the inputs (Services,
    # workloads, ConfigMaps, VirtualServices, ...): what no generated object may be named as
    objects: list[tuple[str, str, str, str]] = field(default_factory=list)
