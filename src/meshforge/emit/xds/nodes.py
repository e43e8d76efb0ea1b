"""Node kinds: what sort of proxy a node is, and how its listener and scope are built.

Input: a service (for a sidecar) or the mesh's edge, and the services with routable ports. Output:
the node's scope (which services it is told about, and the key under which nodes with the same scope
share one configuration) and its listener. A sidecar is told about the services it depends on and
listens on loopback at its outbound port; the edge proxy is told about the edge service, serves the
public and preview hosts, and listens where its bootstrap says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from ...model import Edge, Routing, Service
from ...xdsapi import EDGE_HOST, SIDECAR_HOST
from . import listeners, naming, resources

# (host, port, routing, the mesh's edge, inline route configuration or None for RDS, access logs to serve or None)
ListenerBuilder = Callable[[str, int, Routing, "Edge | None", "route_pb2.RouteConfiguration | None",
                            "resources.AccessLogs | None"], listener_pb2.Listener]


@dataclass(frozen=True)
class NodeKind:
    name: str
    listener: ListenerBuilder
    route_config: str  # the name of its route configuration (RDS)
    default_host: str  # where it listens unless its bootstrap says otherwise

    def scope(self, svc: Service, live: frozenset[str], all_ids: tuple[str, ...]) -> tuple[tuple, tuple[str, ...]]:
        """(group key, service ids the node is told about). Nodes with one key share one configuration."""
        if svc.depends_on is None:
            return (self.name, svc.namespace, None), all_ids  # None: "everything", without hashing every id
        scope = tuple(d.service for d in svc.depends_on)  # resolve sorts dependencies by id
        if not live.issuperset(scope):
            scope = tuple(s for s in scope if s in live)
        return (self.name, svc.namespace, scope), scope


SIDECAR = NodeKind("sidecar", listeners.listener, naming.ROUTE_CONFIG, SIDECAR_HOST)
EDGE = NodeKind("edge", listeners.edge_listener, naming.EDGE_ROUTE_CONFIG, EDGE_HOST)
TUNNEL = NodeKind("tunnel", listeners.tunnel_listener, naming.TUNNEL_ROUTE_CONFIG, EDGE_HOST)
