"""The resolved model: plain, immutable, serialisable data that every backend lowers from.

Input: nothing (types only). Output: `Model` = services, and per routing key the destination of
every service that key forks. No YAML, no protobuf. Each node carries the `Span` of the input that
produced it so later stages can blame the input.

Destinations are a tagged union (`Destination`): code that handles them matches on the type and
ends with `typing.assert_never`, so a new kind cannot fall through silently.
"""

from __future__ import annotations

import bisect
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import ClassVar

from .diagnostics import Span

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
UNDECLARED = "UNKNOWN"  # no known name prefix and no appProtocol: Istio detects the protocol at run time
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
    origin: Span = field(default_factory=Span)  # where the port is declared (a manifest's line)
    # when a Baseline entry amended the protocol of an imported Service's port: what that Service (the one the
    # cluster runs, which Istio reads) says, and where
    cluster_protocol: str | None = field(default=None, metadata={"json": "unless-default"})
    cluster_origin: Span | None = field(default=None, metadata={"json": "unless-default"})

    @property
    def cluster_disagrees(self) -> bool:
        """The cluster's Service declares a protocol that cannot be routed per request, and meshforge routes the
        port by an amended one: the cluster's proxies go by the Service and ignore the routes."""
        return self.cluster_protocol is not None and self.routable and \
            self.cluster_protocol not in HTTP_PROTOCOLS and self.cluster_protocol != UNDECLARED

    @property
    def routable(self) -> bool:
        """HTTP-family ports can be routed per request, and so can undeclared ones (as Istio does: it
        detects the protocol at run time; routing applies if the traffic is HTTP)."""
        return self.protocol in HTTP_PROTOCOLS or self.protocol == UNDECLARED

    @property
    def undeclared(self) -> bool:
        return self.protocol == UNDECLARED

    @property
    def http2(self) -> bool:
        return self.protocol in H2_PROTOCOLS


def rfc3339(t: datetime) -> str:
    """A time as RFC 3339 text, UTC written as Z."""
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
class Workload:
    """A set of pods a Service selects (a Deployment, StatefulSet, ...; or labels a Baseline declares)."""

    kind: str
    name: str
    labels: tuple[tuple[str, str], ...]  # pod template labels
    origin: Span = field(default_factory=Span)


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    cluster_domain: str
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...] = ()  # static baseline addresses; empty = DNS of the FQDN
    depends_on: tuple[Dependency, ...] | None = None  # None = unknown: its proxy is told about every service
    workloads: tuple[Workload, ...] = ()  # the baseline: every pod these select
    origin: Span = field(default_factory=Span)

    @property
    def common_labels(self) -> dict[str, str]:
        """Labels every baseline workload carries with the same value: what a subset of all of them can use."""
        if not self.workloads:
            return {}
        first, *rest = (dict(w.labels) for w in self.workloads)
        return {k: v for k, v in first.items() if all(r.get(k) == v for r in rest)}

    @cached_property  # read for every cluster, route and lookup: made once per service
    def id(self) -> str:
        return f"{self.name}.{self.namespace}"

    @cached_property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{self.cluster_domain}"

    @property
    def routable_ports(self) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.routable)

    def names(self, from_namespace: str | None) -> tuple[str, ...]:
        """Every name that reaches this service from a caller in `from_namespace` (None: a caller in
        no namespace of the mesh), as Kubernetes DNS resolves them: the bare name from its own
        namespace only, then name.namespace, name.namespace.svc and the FQDN. The one answer to that
        question, used by resolution, lookups and every backend."""
        qualified = (self.id, f"{self.id}.svc", self.fqdn)
        return (self.name, *qualified) if from_namespace == self.namespace else qualified


class ServiceIndex:
    """Services by every name that reaches them (`Service.names`)."""

    def __init__(self, services: typing.Iterable[Service]):
        self.by_id: dict[str, Service] = {}
        self._qualified: dict[str, Service] = {}
        self._bare: dict[str, list[Service]] = {}
        for s in services:
            self.by_id[s.id] = s
            for n in s.names(None):
                self._qualified[n] = s
            self._bare.setdefault(s.name, []).append(s)

    def put(self, s: Service) -> None:
        """Add `s`, or replace the service with its id (an index kept up to date one service at a time)."""
        old = self.by_id.get(s.id)
        if old is not None:
            self.remove(old.id)
        self.by_id[s.id] = s
        for n in s.names(None):
            self._qualified[n] = s
        self._bare.setdefault(s.name, []).append(s)

    def remove(self, service_id: str) -> None:
        s = self.by_id.pop(service_id, None)
        if s is None:
            return
        for n in s.names(None):
            if self._qualified.get(n) is s:
                del self._qualified[n]
        same = self._bare[s.name]
        del same[next(i for i, x in enumerate(same) if x is s)]
        if not same:
            del self._bare[s.name]

    def find(self, ref: str, namespace: str | None) -> Service | None:
        """The service `ref` names from `namespace`. From outside (None), where no namespace makes a
        bare name unambiguous, a bare name counts when exactly one service has it (command lines)."""
        if namespace is not None:
            s = self.by_id.get(f"{ref}.{namespace}")
            if s is not None:
                return s
        s = self._qualified.get(ref)
        if s is not None:
            return s
        if namespace is None:
            same = self._bare.get(ref, [])
            return same[0] if len(same) == 1 else None
        return None


@dataclass(frozen=True)
class HostDestination:
    """A separate Service (or any DNS name) runs the fork."""

    kind: ClassVar[str] = "host"
    host: str
    port: int | None = None  # None = the baseline port

    def describe(self) -> str:
        return f"host {self.host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class EndpointsDestination:
    """Static addresses run the fork (a VM, a laptop tunnel)."""

    kind: ClassVar[str] = "endpoints"
    endpoints: tuple[Endpoint, ...]

    def describe(self) -> str:
        return "endpoints " + ", ".join(f"[{e.address}]:{e.port}" if ":" in e.address else f"{e.address}:{e.port}"
                                        for e in self.endpoints)


@dataclass(frozen=True)
class SubsetDestination:
    """Pods of the baseline Service itself, told apart by labels (Istio subsets)."""

    kind: ClassVar[str] = "subset"
    labels: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return "subset " + ",".join(f"{k}={v}" for k, v in self.labels)


@dataclass(frozen=True)
class ImageChange:
    container: str | None  # None: the pod's only container
    image: str


@dataclass(frozen=True)
class EnvChange:
    container: str | None  # None: the pod's only container
    name: str
    value: str


@dataclass(frozen=True)
class WorkloadDestination:
    """A fork of the baseline workload that meshforge renders (`--format kubernetes`). Resolution binds
    the manifests it is made from; the lowering pass turns it into a host fork to the fork's Service plus
    the objects to render, so no emitter sees this kind."""

    kind: ClassVar[str] = "workload"
    images: tuple[ImageChange, ...] = ()
    env: tuple[EnvChange, ...] = ()
    replicas: int = 1
    workload: UserObject | None = None  # the baseline Deployment, StatefulSet or Rollout copied, as written
    service: UserObject | None = None  # the baseline Service, as written
    from_kind: str | None = None  # `from`: the workload to copy, when the Service selects several
    from_name: str | None = None

    def describe(self) -> str:
        what = f"{self.workload.kind} {self.workload.name}" if self.workload else "the baseline workload"
        return f"workload fork of {what}"


@dataclass(frozen=True)
class WorkloadForkBinding:
    """What lowering decides for one workload fork (`lower.workload_forks`): the names its objects take, the
    label its pods are selected by, and so the host that reaches them. The objects themselves are built from
    it by the Kubernetes backend (`emit.kubernetes.fork_objects`), which the pipeline hands to lowering."""

    sandbox: str
    destination: WorkloadDestination  # with `workload` and `service` bound
    service: Service  # meshforge's service: its ports' protocols and the cluster domain
    workload_name: str
    service_name: str
    pod_label: tuple[str, str]  # the one label (key, value) the fork's Service selects, besides the sandbox's
    origin: Span = field(default_factory=Span)

    @property
    def namespace(self) -> str:
        return self.destination.service.namespace

    @property
    def host(self) -> str:
        return f"{self.service_name}.{self.namespace}.svc.{self.service.cluster_domain}"


@dataclass(frozen=True)
class LocalDestination:
    """A fork on a developer's laptop: `meshforge connect` holds a reverse tunnel from the laptop to the mesh's
    tunnel node (`Model.tunnel`). Lowering turns it into a host fork to the tunnel node, plus a `LocalFork` the
    tunnel node's own configuration is made from, so no other emitter sees this kind."""

    kind: ClassVar[str] = "local"
    owner: str | None = None  # a subject alternative name the laptop's client certificate must carry
    otherwise: HostDestination | EndpointsDestination | None = None  # while no laptop is attached (None: baseline)

    def describe(self) -> str:
        return "a laptop (meshforge connect)" + (f" of {self.owner}" if self.owner else "") + \
            (f", otherwise {self.otherwise.describe()}" if self.otherwise else "")


Destination = HostDestination | EndpointsDestination | SubsetDestination | WorkloadDestination | LocalDestination
DESTINATION_KINDS: tuple[type, ...] = typing.get_args(Destination)


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
    # signed preview links of this key issued before it are refused (the edge's previewAuth)
    not_before: datetime | None = field(default=None, metadata={"json": "unless-default"})

    @cached_property
    def by_service(self) -> dict[str, Fork]:
        return {f.service: f for f in self.forks}


@dataclass(frozen=True)
class Sandbox:
    name: str
    namespace: str
    key: str
    labels: tuple[tuple[str, str], ...]
    expires_at: datetime | None
    expired: bool
    forks: tuple[Fork, ...]
    origin: Span = field(default_factory=Span)
    not_before: datetime | None = field(default=None, metadata={"json": "unless-default"})  # of its preview links


@dataclass(frozen=True)
class UserObject:
    """An object of another system found in the input (e.g. a user's Istio VirtualService), kept as
    written for the backends that act on it. The body is canonical JSON text: immutable, hashable,
    and every reader gets its own copy."""

    api_version: str
    kind: str
    name: str
    namespace: str
    body_json: str
    origin: Span = field(default_factory=Span)
    # where some parts are (pointer -> span: the rules of a user's route), for messages that point at them
    spans: tuple[tuple[str, Span], ...] = field(default=(), metadata={"json": "unless-default"})

    @staticmethod
    def of(data: Mapping, name: str, namespace: str, origin: Span,
           spans: tuple[tuple[str, Span], ...] = ()) -> UserObject:
        return UserObject(str(data.get("apiVersion")), str(data.get("kind")), name, namespace,
                          json.dumps(data, ensure_ascii=False, separators=(",", ":")), origin, spans)

    def span_of(self, pointer: str) -> Span:
        return next((s for p, s in self.spans if p == pointer), self.origin)

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def body(self) -> dict:
        return json.loads(self.body_json)


@dataclass(frozen=True)
class Tunnel:
    """The mesh's tunnel node (CONTRACT §5.4, a Baseline's `tunnel`): where sidecars send the keys of forks that
    run on laptops. It holds the laptops' reverse tunnels (`meshforge bootstrap --tunnel`)."""

    host: str  # its data listener: a Service name or an address
    port: int
    origin: Span = field(default_factory=Span)


@dataclass(frozen=True)
class LocalFork:
    """A fork to a laptop, as the tunnel node needs it (made by lowering from a `LocalDestination`)."""

    key: str  # the routing key
    service: str  # service id
    owner: str | None  # who may attach (a client certificate's subject alternative name); None: any the CA signed
    node: str  # the laptop's reverse-tunnel node id: `tunnel_node(key, service)`
    otherwise: HostDestination | EndpointsDestination | None = None  # while no laptop is attached (None: baseline)


def tunnel_node(key: str, service: str) -> str:
    """The reverse-tunnel node id (and TLS server name) a laptop attaches as, for one key's fork of one service:
    `<key>.<name>.<namespace>`, a DNS name (each part is a DNS label), so it is also the SNI the laptop sends."""
    return f"{key}.{service}"


@dataclass(frozen=True)
class PreviewAuth:
    """`edge.previewAuth: {mode: signed}` (CONTRACT §5.5): a preview host needs a token signed by one of these
    keys, whose audience names the host's routing key (`preview.audience`), with an expiry at most `max_ttl`
    seconds after its issue."""

    jwks: str  # the public keys as a JSON Web Key Set (canonical JSON), each with its RFC 7638 thumbprint as kid
    max_ttl: int  # seconds


@dataclass(frozen=True)
class Edge:
    """Where traffic from outside the mesh enters (CONTRACT §2.1 `edge`), and whom it trusts with a routing key.

    `<key>.<preview_domain>` reaches the key's version of every service as if the request carried the key;
    a request from outside `trusted_sources` loses any key it sent itself (header and baggage member).
    """

    service: str  # id of the service outside traffic reaches
    port: int  # its HTTP port the edge sends to
    hosts: tuple[str, ...]  # public hosts of the baseline (sorted)
    preview_domain: str | None
    trusted_sources: tuple[str, ...]  # CIDRs in normal form (sorted)
    istio_gateway: str  # namespace/name of the Istio Gateway (Istio output)
    gateway: str  # namespace/name of the Gateway API Gateway (Gateway API output)
    origin: Span
    preview_auth: PreviewAuth | None = field(default=None, metadata={"json": "unless-default"})

    def preview_host(self, key: str) -> str:
        return f"{key}.{self.preview_domain}"

    def key_of_host(self, host: str) -> str | None:
        """The routing key a preview host names (`<key>.<previewDomain>`, any case, port ignored), else None."""
        if self.preview_domain is None:
            return None
        host = host.strip().lower()
        bare, colon, port = host.rpartition(":")
        if colon and port.isdigit():
            host = bare
        label, dot, rest = host.rstrip(".").partition(".")
        return label if dot and rest == self.preview_domain else None


@dataclass(frozen=True, eq=False)
class Change:
    """How a model differs from the model resolved before it: the one value every stage after resolution
    takes to work in proportion to a change instead of walking the mesh. A stage that last saw the model
    `parent` names, when `follows(its token)`, need look only at what the change names: with `services`,
    `settings` and `edge` false, every routing key but `keys` has the very `KeyRoutes` it had and the
    services are the very objects they were. Otherwise (`parent` None, or a stage that saw another model)
    the stage starts from scratch. Also two indexes resolution has at hand. Not part of the model's value
    (not compared, not in JSON); `Model.change`."""

    token: object  # this model's place in the line; compared by identity
    parent: object | None  # the token of the model resolved before it, None when unknown
    keys: frozenset[str]  # routing keys whose forks may differ from the parent's (added, changed, removed)
    services: bool = True  # the services (or what they were resolved from) may differ
    settings: bool = True  # the routing settings or the cluster domain may differ
    edge: bool = True  # the edge may differ
    workload_sandboxes: frozenset[str] = frozenset()  # sandboxes with a workload fork (what lowering looks at)
    local_sandboxes: frozenset[str] = frozenset()  # sandboxes with a fork to a laptop (ditto)
    group_keys: frozenset[str] = frozenset()  # the keys route groups hold
    next_expiry: datetime | None = None  # when the next active sandbox expires
    # the services (ids) that differ from the parent's, added and removed ones included, when `services` is
    # true and resolution knows which (None: not known; look at every service)
    service_ids: frozenset[str] | None = None

    def keys_since(self, token: object | None, services: bool = False) -> frozenset[str] | None:
        """The routing keys that may differ from the model `token` names when only keys changed since it (or,
        with `services`, keys and services resolution can name: a key whose sandbox forks a changed service
        was resolved again and is among them); None when anything else may have: the caller looks at
        everything."""
        if token is None or self.parent is not token or self.settings:
            return None
        if self.services and not (services and self.service_ids is not None):
            return None
        return self.keys


@dataclass(frozen=True)
class Model:
    routing: Routing
    services: tuple[Service, ...]  # sorted by id
    keys: tuple[KeyRoutes, ...]  # active routing keys, sorted
    sandboxes: tuple[Sandbox, ...] = ()  # every sandbox, expired ones included, sorted by name
    user_objects: tuple[UserObject, ...] = ()  # sorted by (group, kind, namespace, name, origin)
    generated: tuple[UserObject, ...] = ()  # objects lowering made for backends to render (workload forks)
    edge: Edge | None = None
    tunnel: Tunnel | None = field(default=None, metadata={"json": "unless-default"})
    # set by lowering: the forks to laptops, sorted by (key, service)
    local_forks: tuple[LocalFork, ...] = field(default=(), metadata={"json": "unless-default"})
    # (API group, kind, namespace, name) of the objects of other systems among the inputs: no object a backend
    # generates may take one of these identities (backends.unique)
    inputs: frozenset[tuple[str, str, str, str]] = field(default=frozenset(), compare=False, repr=False,
                                                         metadata={"json": False})
    change: Change | None = field(default=None, compare=False, repr=False, metadata={"json": False})

    @cached_property
    def index(self) -> ServiceIndex:
        return ServiceIndex(self.services)

    @cached_property
    def service_by_id(self) -> dict[str, Service]:
        return {s.id: s for s in self.services}

    @cached_property
    def _local_by_fork(self) -> dict[tuple[str, str], LocalFork]:
        return {(f.key, f.service): f for f in self.local_forks}

    def describe_fork(self, fork: Fork, key: str) -> str:
        """Where a fork runs, in words: what was written, for a fork lowering turned into a host fork to the
        tunnel node (a laptop's), else its destination."""
        local = self._local_by_fork.get((key, fork.service))
        if local is not None:
            return LocalDestination(local.owner, local.otherwise).describe()
        return fork.destination.describe()

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

    def key_index(self, name: str) -> int | None:
        """Where one routing key is in `keys` (binary search: no index of every key is built)."""
        i = bisect.bisect_left(self.keys, name, key=_key_name)
        return i if i < len(self.keys) and self.keys[i].key == name else None

    def sandbox_index(self, name: str) -> int | None:
        i = bisect.bisect_left(self.sandboxes, name, key=_sandbox_name)
        return i if i < len(self.sandboxes) and self.sandboxes[i].name == name else None

    def service(self, service_id: str) -> Service | None:
        """One service by id (binary search: no index of every service is built)."""
        i = bisect.bisect_left(self.services, service_id, key=_service_id)
        return self.services[i] if i < len(self.services) and self.services[i].id == service_id else None

    def key(self, name: str) -> KeyRoutes | None:
        """One routing key's routes."""
        i = self.key_index(name)
        return None if i is None else self.keys[i]

    def sandbox(self, name: str) -> Sandbox | None:
        i = self.sandbox_index(name)
        return None if i is None else self.sandboxes[i]

    @property
    def next_expiry(self) -> datetime | None:
        """When the next active sandbox expires: the model changes then without any input changing."""
        if self.change is not None:
            return self.change.next_expiry
        times = [s.expires_at for s in self.sandboxes if s.expires_at is not None and not s.expired]
        return min(times) if times else None

    def user_objects_of(self, group: str, kind: str) -> tuple[UserObject, ...]:
        return tuple(o for o in self.user_objects if o.group == group and o.kind == kind)

    def lookup(self, ref: str, namespace: str | None = None) -> Service | None:
        """A service by any name that reaches it from `namespace` (`Service.names`)."""
        return self.index.find(ref, namespace)

    def cluster_service(self, host: str, namespace: str) -> tuple[str, str] | None:
        """(name, namespace) of the Kubernetes Service a host names: `name.ns.svc.<a cluster domain of the
        mesh>`, `name.ns.svc`, `name.ns`, or a bare `name` in `namespace`; None for anything else (a host
        outside the cluster)."""
        parts = host.rstrip(".").split(".")
        if len(parts) == 1:
            return parts[0], namespace
        if len(parts) == 2 or len(parts) == 3 and parts[2] == "svc" or \
                len(parts) > 3 and parts[2] == "svc" and ".".join(parts[3:]) in {s.cluster_domain for s in self.services}:
            return parts[0], parts[1]
        return None

    def destination_of(self, service_id: str, key: str | None) -> Fork | None:
        """The fork a request with `key` reaches at `service_id`, or None for the baseline."""
        if key is None:
            return None
        kr = self.key_by_name.get(key)
        return kr.by_service.get(service_id) if kr else None


def _service_id(svc: Service) -> str:
    return svc.id


def _key_name(kr: KeyRoutes) -> str:
    return kr.key


def _sandbox_name(sb: Sandbox) -> str:
    return sb.name


# -- JSON: backends are tested from model files, not only from specs ------------------------------

def _to_data(value):
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        if isinstance(value, DESTINATION_KINDS):
            out["kind"] = value.kind
        for f in fields(value):
            keep = f.metadata.get("json", True)
            if keep == "unless-default":
                keep = getattr(value, f.name) != f.default
            if keep:
                out[f.name] = _to_data(getattr(value, f.name))
        return out
    if isinstance(value, tuple | list):
        return [_to_data(v) for v in value]
    if isinstance(value, datetime):
        return rfc3339(value)
    return value


def to_json(model: Model) -> dict:
    """The model as plain JSON data."""
    return _to_data(model)


def _build(tp, value):
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) > 1:  # a tagged union: the "kind" field picks the member
            by_kind = {a.kind: a for a in args}
            return _build(by_kind[value["kind"]], value)
        return _build(args[0], value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value))
    if tp is datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc) \
            if value.endswith("Z") else datetime.fromisoformat(value)
    if isinstance(tp, type) and is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _build(hints[f.name], value[f.name]) for f in fields(tp) if f.name in value})
    return value


def from_json(data: dict) -> Model:
    """Inverse of `to_json`."""
    return _build(Model, data)
