"""The xDS contract between the compiler and the server: protocol constants, resources, snapshots.

Input: nothing (constants and types). Output: what both sides agree on: the type URLs and the order
in which they are pushed, the node-metadata key and default ports, the `Resource` a snapshot holds
and the `Snapshot` protocol the server consumes. The compiler (`emit/xds`) produces snapshots; the
server (`server/`) serves them; neither imports the other, both import this module.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from .names import (  # noqa: F401  (the server uses the compiler's rules)
    dns1123_subdomain,
    is_ip,
    join_address,
    parse_address,
    printable,
    split_host_port,
    valid_routing_key,
)


@dataclass(frozen=True)
class XdsType:
    """One xDS resource type, as both sides see it. Everything that depends on the set of types (push order,
    wildcard subscriptions, metric labels, `/debug/config` decoding, the sections of `render --format xds`,
    the consistency check) is derived from `TYPES`: adding a type (SDS, say) is one row."""

    url: str  # type URL
    short: str  # LDS, RDS, CDS, EDS: metric labels and logs (a fixed set)
    section: str  # its section in `render --format xds` files
    module: str  # the module of its message
    message: str  # the message's full name
    wildcard: bool  # requested as a wildcard (full state), or by name
    push_rank: int  # make-before-break: pushed after every type of a lower rank
    render_rank: int  # its place in a rendered file (the order a reader expects: listeners first)
    refers_to: tuple[str, ...] = ()  # short names of the types its resources name (what `consistent` checks)


TYPES: tuple[XdsType, ...] = (
    # clusters (and their endpoints) exist before a listener or route names them
    XdsType("type.googleapis.com/envoy.config.cluster.v3.Cluster", "CDS", "clusters",
            "envoy.config.cluster.v3.cluster_pb2", "envoy.config.cluster.v3.Cluster", True, 0, 2),
    XdsType("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "EDS", "endpoints",
            "envoy.config.endpoint.v3.endpoint_pb2", "envoy.config.endpoint.v3.ClusterLoadAssignment", False, 1, 3,
            ("CDS",)),
    XdsType("type.googleapis.com/envoy.config.listener.v3.Listener", "LDS", "listeners",
            "envoy.config.listener.v3.listener_pb2", "envoy.config.listener.v3.Listener", True, 2, 0, ("RDS", "CDS")),
    XdsType("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "RDS", "routes",
            "envoy.config.route.v3.route_pb2", "envoy.config.route.v3.RouteConfiguration", False, 3, 1, ("CDS",)),
)


@dataclass(frozen=True)
class Derived:
    """What the type table gives every other place."""

    by_url: dict[str, XdsType]
    push_order: tuple[str, ...]  # make-before-break
    render_order: tuple[str, ...]
    wildcard: frozenset[str]
    short_names: dict[str, str]

    @staticmethod
    def of(types: tuple[XdsType, ...]) -> "Derived":
        return Derived({t.url: t for t in types}, tuple(t.url for t in sorted(types, key=lambda t: t.push_rank)),
                       tuple(t.url for t in sorted(types, key=lambda t: t.render_rank)),
                       frozenset(t.url for t in types if t.wildcard), {t.url: t.short for t in types})


_D = Derived.of(TYPES)
BY_URL, PUSH_ORDER, RENDER_ORDER, WILDCARD_TYPES, SHORT_NAMES = \
    _D.by_url, _D.push_order, _D.render_order, _D.wildcard, _D.short_names
BY_SHORT = {t.short: t for t in TYPES}
CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE = (BY_SHORT[s].url for s in ("CDS", "EDS", "LDS", "RDS"))

# The modules of every message a snapshot carries, inside an Any included (filters, matchers, actions): a
# reader that decodes resources (the admin server's /debug/config) imports these, so that what it can decode
# does not depend on which compiler modules happen to be loaded in its process. A test decodes a compiled
# mesh in a process that imports nothing else.
MESSAGE_MODULES = tuple(t.module for t in TYPES) + (
    "envoy.config.accesslog.v3.accesslog_pb2",
    "envoy.extensions.access_loggers.grpc.v3.als_pb2", "envoy.extensions.common.matching.v3.extension_matcher_pb2",
    "envoy.extensions.filters.common.matcher.action.v3.skip_action_pb2",
    "envoy.extensions.filters.http.local_ratelimit.v3.local_rate_limit_pb2",
    "envoy.extensions.filters.http.lua.v3.lua_pb2", "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.http.early_header_mutation.header_mutation.v3.header_mutation_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2", "envoy.type.matcher.v3.http_inputs_pb2",
    "xds.type.matcher.v3.matcher_pb2",
)

OUTBOUND_PORT_METADATA = "meshforge.outbound_port"  # node metadata key naming the sidecar's listener port
PASSTHROUGH_CLUSTER = "meshforge_passthrough"  # a transparent sidecar's traffic to destinations outside the mesh
TRANSPARENT_METADATA = "meshforge.transparent"  # node metadata key: "true" for a sidecar behind capture rules
LISTEN_ADDRESS_METADATA = "meshforge.listen_address"  # node metadata key: the edge's listener HOST:PORT
TUNNEL_NODE = "meshforge-tunnel"  # node.cluster of the tunnel node (CONTRACT §5.4)
DEFAULT_TUNNEL_PORT = 15080  # the tunnel node's data listener (render's; its bootstrap chooses)
DEFAULT_TUNNEL_ACCEPT_PORT = 15443  # where it takes laptops' reverse tunnels (ditto)
TUNNEL_ACCEPT_METADATA = "meshforge.tunnel_accept_address"  # node metadata key: where the tunnel node takes laptops
EDGE_NODE = "meshforge-edge"  # node.cluster of the edge proxy (never a service id: those are name.namespace)
DEFAULT_OUTBOUND_PORT = 15001
DEFAULT_EDGE_PORT = 8080
SIDECAR_HOST = "127.0.0.1"  # sidecars listen on loopback: applications call them as their HTTP proxy
EDGE_HOST = "0.0.0.0"  # the edge listens for outside traffic
DEFAULT_ADMIN_PORT = 15000
MAX_PORT = 65535


def parse_cluster(name: str) -> tuple[int, str, str] | None:
    """(port, routing key or "", FQDN) of a cluster `outbound|<port>|<key>|<fqdn>` (CONTRACT §3.2), else None."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit() or not dns1123_subdomain(parts[3]):
        return None
    if parts[2] and not valid_routing_key(parts[2]):
        return None
    return int(parts[1]), parts[2], parts[3]


def short_name(type_url: str) -> str:
    """LDS/RDS/CDS/EDS for known types; a fixed label for anything else (metric labels stay bounded)."""
    return SHORT_NAMES.get(type_url, "other")


def outbound_port(value: object) -> int:
    """The listener port a node asks for in its metadata; ValueError when it is not a port number."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a port")
        value = int(value)
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"{value!r} is not a port")
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise ValueError(f"{value!r} is not a port (1-{MAX_PORT})")
    return value


def listen_address(value: object) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [ADDR]:PORT) from node metadata; ValueError when it is not one."""
    if not isinstance(value, str) or not 3 <= len(value) <= 300:
        raise ValueError(f"{value!r} is not HOST:PORT")
    host, port = split_host_port(value)
    if not is_ip(host):
        raise ValueError(f"{value!r}: the listen host must be an IP address")
    return host, outbound_port(port)


@dataclass(frozen=True)
class Resource:
    """One xDS resource, serialized once: the bytes a response carries and their content hash."""

    name: str
    type_url: str
    body: bytes  # deterministic serialization
    version: str  # content hash: a restarted or second server gives the same versions

    @staticmethod
    def of(name: str, type_url: str, body: bytes) -> Resource:
        return Resource(name, type_url, body, hashlib.sha256(body).hexdigest()[:16])


class ResourceSet(dict):
    """One type's resources for one node (name -> `Resource`), as the compiler makes them: never changed once
    made, and shared by every node of a scope. `version` is the set's SotW version (a hash of each name and
    resource version), computed on first use and kept with the set, so a thousand streams of one scope hash it
    once. `version_of` gives the same for any mapping."""

    __slots__ = ("_version",)

    @property
    def version(self) -> str:
        try:
            return self._version
        except AttributeError:
            self._version = _hash(self)
            return self._version


def version_of(resources: Mapping[str, Resource]) -> str:
    """The SotW version of a set of resources: the same for the same names and contents, whatever made it."""
    return resources.version if type(resources) is ResourceSet else _hash(resources)


def _hash(resources: Mapping[str, Resource]) -> str:
    h = hashlib.sha256()
    for name in sorted(resources):
        h.update(name.encode())
        h.update(b"\0")
        h.update(resources[name].version.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class Snapshot(Protocol):
    """What the server serves. The compiler's snapshots satisfy it; the server relies on nothing else.

    Identity rule: when a node's configuration did not change between two snapshots, both hand back
    the very same objects for it (`nodes[node]`, and each per-type mapping `resources()` returns
    other than listeners), and those objects are never mutated. The server uses `is` on them to skip
    unchanged nodes in O(1); a compiler that copied them would make every push compare versions, one that
    mutated them would serve stale ones. Per-type mappings that are `ResourceSet`s carry their version.
    """

    @property
    def nodes(self) -> Mapping[str, object]:
        """Node cluster (the service a sidecar belongs to) -> an opaque per-node configuration."""
        ...

    @property
    def settings(self) -> Hashable:
        """Mesh-wide settings every node's configuration depends on; a change here changes every node."""
        ...

    def resources(self, node: str, port: int, host: str | None = None, transparent: bool = False,
                  accept: tuple[str, int] | None = None) -> Mapping[str, Mapping[str, Resource]]:
        """Type URL -> resource name -> resource (a `ResourceSet`, or any mapping) for one node whose listener is on `host:port`
        (None: the node kind's default host); `transparent`: a sidecar behind capture rules; `accept`: where
        the tunnel node takes laptops."""
        ...


def message_class(type_url: str):
    """The protobuf class of a type URL's messages (its module imported on demand)."""
    t = BY_URL[type_url]
    module = importlib.import_module(t.module)
    return getattr(module, t.message.rsplit(".", 1)[1])


def _references(msg) -> Iterator[tuple[str, str]]:
    """(type short name, resource name) that a message names, inside Any fields too: route actions' clusters,
    RDS route configuration names, a load assignment's cluster."""
    from google.protobuf import any_pb2, symbol_database

    name = msg.DESCRIPTOR.full_name
    if name == "envoy.config.route.v3.RouteAction" and msg.cluster:
        yield "CDS", msg.cluster
    elif name == "envoy.extensions.filters.network.http_connection_manager.v3.Rds" and msg.route_config_name:
        yield "RDS", msg.route_config_name
    elif name == "envoy.config.endpoint.v3.ClusterLoadAssignment":
        yield "CDS", msg.cluster_name
    if isinstance(msg, any_pb2.Any):
        try:
            inner = symbol_database.Default().GetSymbol(msg.type_url.split("/", 1)[1])()
        except KeyError:
            return
        inner.ParseFromString(msg.value)
        yield from _references(inner)
        return
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.is_repeated:
            if field.message_type.GetOptions().map_entry:
                values = [v for v in value.values()] if field.message_type.fields_by_name["value"].message_type \
                    else []
            else:
                values = list(value)
            for v in values:
                yield from _references(v)
        else:
            yield from _references(value)


def consistent(resources: Mapping[str, Mapping[str, Resource]]) -> list[str]:
    """What one node's resources name and do not hold (go-control-plane's `Snapshot.Consistent`): a route to a
    cluster that is not there, a listener's RDS name or a load assignment for no cluster. A compiler slip then
    shows as an error instead of a 503. Empty when consistent."""
    for module in MESSAGE_MODULES:
        importlib.import_module(module)
    held = {BY_URL[t].short: set(by_name) for t, by_name in resources.items() if t in BY_URL}
    problems = []
    for t, by_name in sorted(resources.items()):
        xt = BY_URL.get(t)
        if xt is None:
            continue
        cls = message_class(t)
        for name, r in sorted(by_name.items()):
            for kind, ref in _references(cls.FromString(r.body)):
                if kind in xt.refers_to and ref not in held.get(kind, ()):
                    problems.append(f"{xt.short} {name} names {kind} {ref}, which the node is not sent")
    return problems
