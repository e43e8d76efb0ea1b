"""The resolved model: plain, immutable, serialisable data that every backend lowers from.

Input: nothing (types only). Output: `Model` = services, and per routing key the destination of
every service that key forks. No YAML, no protobuf. Each node carries the `Span` of the input that
produced it so later stages can blame the input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from functools import cached_property

from .diagnostics import Span

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
H2_PROTOCOLS = frozenset({"HTTP2", "GRPC"})

DEFAULT_BAGGAGE_KEY = "meshforge-routing-key"
DEFAULT_HEADER = "x-meshforge-routing-key"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Routing:
    """How the routing key travels: a W3C baggage member, or a plain header."""

    baggage_key: str = DEFAULT_BAGGAGE_KEY  # <baggage_key>=<routing key> inside `baggage`
    header: str = DEFAULT_HEADER  # header whose whole value is the routing key


@dataclass(frozen=True)
class Port:
    name: str  # port name ("" when unnamed)
    number: int  # service port
    protocol: str  # HTTP, HTTP2, GRPC, GRPC-WEB, TCP, TLS, HTTPS, ..., UNKNOWN (Istio's names)

    @property
    def routable(self) -> bool:
        """Only HTTP-family ports can be routed per request."""
        return self.protocol in HTTP_PROTOCOLS

    @property
    def http2(self) -> bool:
        return self.protocol in H2_PROTOCOLS


def is_ip(address: str) -> bool:
    """An IP literal (static addresses) rather than a DNS name (resolved by the proxy)."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    address: str  # IP or DNS name
    port: int


@dataclass(frozen=True)
class Dependency:
    service: str  # service id name.namespace
    inferred: bool  # from an env value rather than declared
    origin: Span


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    cluster_domain: str
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...] = ()  # static baseline addresses; empty = DNS of the FQDN
    depends_on: tuple[Dependency, ...] | None = None  # None = unknown: its proxy is told about every service
    labels: tuple[tuple[str, str], ...] = ()  # pod labels of the baseline workload
    origin: Span = field(default_factory=Span)

    @property
    def id(self) -> str:
        return f"{self.name}.{self.namespace}"

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{self.cluster_domain}"

    @property
    def routable_ports(self) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.routable)


@dataclass(frozen=True)
class Destination:
    """Where a fork runs. Exactly one of host / endpoints / subset is set, named by `kind`."""

    kind: str  # "host" | "endpoints" | "subset"
    host: str | None = None
    port: int | None = None  # host port; None = the baseline port
    endpoints: tuple[Endpoint, ...] = ()
    subset_labels: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.kind == "host":
            return f"host {self.host}" + (f":{self.port}" if self.port else "")
        if self.kind == "endpoints":
            return "endpoints " + ", ".join(f"{e.address}:{e.port}" for e in self.endpoints)
        return "subset " + ",".join(f"{k}={v}" for k, v in self.subset_labels)


@dataclass(frozen=True)
class Fork:
    service: str  # service id
    sandbox: str  # name of the sandbox that declared it
    destination: Destination
    origin: Span = field(default_factory=Span)


@dataclass(frozen=True)
class KeyRoutes:
    """Everything one routing key changes: the forks it reaches, by service id (sorted)."""

    key: str
    owner_kind: str  # "Sandbox" | "RouteGroup"
    owner: str  # its metadata.name
    forks: tuple[Fork, ...]
    origin: Span = field(default_factory=Span)

    @cached_property
    def by_service(self) -> dict[str, Fork]:
        return {f.service: f for f in self.forks}


@dataclass(frozen=True)
class Sandbox:
    name: str
    namespace: str
    key: str
    labels: tuple[tuple[str, str], ...]
    expires_at: str | None  # RFC 3339, as written
    expired: bool
    forks: tuple[Fork, ...]
    origin: Span = field(default_factory=Span)


@dataclass(frozen=True)
class UserVirtualService:
    """A VirtualService found in the input; the Istio backend merges its routes for forked hosts."""

    name: str
    namespace: str
    body: dict  # the document as written (treated as read-only)
    origin: Span = field(default_factory=Span)

    def __hash__(self) -> int:
        return hash((self.name, self.namespace, self.origin))


@dataclass(frozen=True)
class Model:
    routing: Routing
    services: tuple[Service, ...]  # sorted by id
    keys: tuple[KeyRoutes, ...]  # active routing keys, sorted
    sandboxes: tuple[Sandbox, ...] = ()  # every sandbox, expired ones included, sorted by name
    virtual_services: tuple[UserVirtualService, ...] = ()

    @cached_property
    def service_by_id(self) -> dict[str, Service]:
        return {s.id: s for s in self.services}

    @cached_property
    def key_by_name(self) -> dict[str, KeyRoutes]:
        return {k.key: k for k in self.keys}

    @cached_property
    def forks_by_service(self) -> dict[str, tuple[tuple[str, Fork], ...]]:
        """service id -> ((routing key, fork), ...) sorted by key: what each service's routing table holds."""
        out: dict[str, list[tuple[str, Fork]]] = {}
        for kr in self.keys:
            for f in kr.forks:
                out.setdefault(f.service, []).append((kr.key, f))
        return {s: tuple(v) for s, v in sorted(out.items())}

    def lookup(self, ref: str, namespace: str = DEFAULT_NAMESPACE) -> Service | None:
        """A service by `name`, `name.namespace` or FQDN."""
        by_id = self.service_by_id
        if ref in by_id:
            return by_id[ref]
        if f"{ref}.{namespace}" in by_id:
            return by_id[f"{ref}.{namespace}"]
        same_name = [s for s in self.services if ref in (s.fqdn, s.name)]
        return same_name[0] if len(same_name) == 1 else None

    def destination_of(self, service_id: str, key: str | None) -> Fork | None:
        """The fork a request with `key` reaches at `service_id`, or None for the baseline."""
        if key is None:
            return None
        kr = self.key_by_name.get(key)
        return kr.by_service.get(service_id) if kr else None

    def to_dict(self) -> dict:
        return asdict(self)


def to_json(model: Model) -> dict:
    """The model as plain JSON data: backends can be tested from IR files, not only from specs."""
    return asdict(model)


def from_json(data: dict) -> Model:
    """Inverse of `to_json`."""
    import types
    import typing

    def build(tp, value):
        origin = typing.get_origin(tp)
        if value is None:
            return None
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return build(args[0], value)
        if origin is tuple:
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(build(args[0], v) for v in value)
            return tuple(build(a, v) for a, v in zip(args, value))
        if origin is dict or tp is dict:
            return dict(value)
        if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
            hints = typing.get_type_hints(tp)
            return tp(**{k: build(hints[k], v) for k, v in value.items() if k in hints})
        return value

    return build(Model, data)
