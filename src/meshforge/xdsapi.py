"""The xDS contract between the compiler and the server: protocol constants, resources, snapshots.

Input: nothing (constants and types). Output: what both sides agree on: the type URLs and the order
in which they are pushed, the node-metadata key and default ports, the `Resource` a snapshot holds
and the `Snapshot` protocol the server consumes. The compiler (`emit/xds`) produces snapshots; the
server (`server/`) serves them; neither imports the other, both import this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .names import dns1123_subdomain, is_ip, printable, valid_routing_key  # noqa: F401  (the server uses the compiler's rules)

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# Make-before-break: clusters (and their endpoints) exist before a listener or route names them.
PUSH_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
# Listeners and clusters are requested as wildcards (full state); routes and endpoints by name.
WILDCARD_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE})
SHORT_NAMES = {LISTENER_TYPE: "LDS", ROUTE_TYPE: "RDS", CLUSTER_TYPE: "CDS", ENDPOINT_TYPE: "EDS"}

# The modules of every message a snapshot carries, inside an Any included (filters, matchers, actions): a
# reader that decodes resources (the admin server's /debug/config) imports these, so that what it can decode
# does not depend on which compiler modules happen to be loaded in its process. A test decodes a compiled
# mesh in a process that imports nothing else.
MESSAGE_MODULES = (
    "envoy.config.listener.v3.listener_pb2", "envoy.config.route.v3.route_pb2", "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2", "envoy.config.accesslog.v3.accesslog_pb2",
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
LISTEN_ADDRESS_METADATA = "meshforge.listen_address"  # node metadata key: the edge's listener HOST:PORT
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
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 host in brackets, [ADDR]:PORT")
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


class Snapshot(Protocol):
    """What the server serves. The compiler's snapshots satisfy it; the server relies on nothing else.

    Identity rule: when a node's configuration did not change between two snapshots, both hand back
    the very same objects for it (`nodes[node]`, and each per-type mapping `resources()` returns
    other than listeners), and those objects are never mutated. The server uses `is` on them to skip
    unchanged nodes in O(1) and memoises versions by object identity; a compiler that copied or
    mutated them would make every push a full one, or serve stale versions.
    """

    @property
    def nodes(self) -> Mapping[str, object]:
        """Node cluster (the service a sidecar belongs to) -> an opaque per-node configuration."""
        ...

    @property
    def settings(self) -> Hashable:
        """Mesh-wide settings every node's configuration depends on; a change here changes every node."""
        ...

    def resources(self, node: str, port: int, host: str | None = None) -> Mapping[str, Mapping[str, Resource]]:
        """Type URL -> resource name -> resource for one node whose listener is on `host:port`
        (None: the node kind's default host)."""
        ...
