"""Incremental xDS compiler: `Model` → per-node snapshots of serialized resources.

Input: successive models. Output: `Snapshot` = for each sidecar node (a baseline service id), its
route configuration, clusters and load assignments as deterministic protobuf bytes with content-hash
versions, plus the outbound listener (per port). Work grows with what changed:
- a service's virtual hosts and clusters are rebuilt only when its ports, endpoints or forks change;
- a node's route configuration is re-assembled (by concatenating cached virtual-host bytes, without
  re-serialising) only when a service in its scope changed; nodes with the same scope share one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ...diagnostics import Diagnostics
from ...model import Model, Service
from . import names, resources

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)  # make-before-break push order


@dataclass(frozen=True)
class Resource:
    name: str
    type_url: str
    body: bytes  # deterministic serialization
    version: str  # content hash: a restarted or second server gives the same versions

    @staticmethod
    def of(name: str, type_url: str, body: bytes) -> "Resource":
        return Resource(name, type_url, body, hashlib.sha256(body).hexdigest()[:16])


def _ser(msg) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


@dataclass
class _ServiceArtifacts:
    vhosts_same: list[bytes]  # one per routable port, for nodes in the service's namespace
    vhosts_other: list[bytes]  # for nodes elsewhere (no bare-name domains)
    clusters: list[Resource]
    endpoints: list[Resource]


@dataclass
class NodeConfig:
    """What one scope of nodes is told, minus the listener (whose port each node chooses)."""

    routes: dict[str, Resource]
    clusters: dict[str, Resource]
    endpoints: dict[str, Resource]


@dataclass
class Snapshot:
    nodes: dict[str, NodeConfig]  # node id (name.namespace) -> its config (shared between same-scope nodes)
    routing: object
    listener_cache: dict[int, Resource] = field(default_factory=dict)

    def listener(self, port: int = names.DEFAULT_OUTBOUND_PORT) -> Resource:
        if port not in self.listener_cache:
            self.listener_cache[port] = Resource.of(names.LISTENER, LISTENER_TYPE,
                                                    _ser(resources.listener(port, self.routing)))
        return self.listener_cache[port]

    def resources(self, node: str, port: int = names.DEFAULT_OUTBOUND_PORT) -> dict[str, dict[str, Resource]]:
        """type URL -> name -> resource for one node; an unknown node gets an empty, valid config."""
        cfg = self.nodes.get(node)
        if cfg is None:
            return {LISTENER_TYPE: {}, ROUTE_TYPE: {}, CLUSTER_TYPE: {}, ENDPOINT_TYPE: {}}
        return {LISTENER_TYPE: {names.LISTENER: self.listener(port)}, ROUTE_TYPE: cfg.routes,
                CLUSTER_TYPE: cfg.clusters, ENDPOINT_TYPE: cfg.endpoints}


class XdsCompiler:
    """Keeps what it built last time; `compile(model)` rebuilds only what the new model changed."""

    def __init__(self, eds: bool = True):
        self.eds = eds
        self._sigs: dict[str, tuple] = {}
        self._artifacts: dict[str, _ServiceArtifacts] = {}
        self._groups: dict[tuple, NodeConfig] = {}
        self._errors: dict[str, list] = {}  # service id -> diagnostics its artifacts carry
        self._routing = None
        self.stats = {"services_rebuilt": 0, "groups_rebuilt": 0}

    def compile(self, model: Model, diags: Diagnostics | None = None) -> Snapshot:
        diags = diags if diags is not None else Diagnostics()
        if model.routing != self._routing:  # carriers changed: every virtual host changes
            self._sigs.clear()
            self._routing = model.routing
        fbs = model.forks_by_service
        changed: set[str] = set()
        live = set()
        for svc in model.services:
            if not svc.routable_ports:
                continue
            sid = svc.id
            live.add(sid)
            forks = fbs.get(sid, ())
            sig = (svc.name, svc.namespace, svc.cluster_domain, svc.ports, svc.endpoints,
                   tuple((k, f.destination) for k, f in forks))
            if self._sigs.get(sid) != sig:
                errs = Diagnostics()
                for _, f in forks:
                    if f.destination.kind == "subset":
                        errs.error("MF301", f"the Envoy backend cannot route to label "
                                   f"{f.destination.describe()} of {sid}: meshforge serves no Kubernetes endpoints",
                                   f.origin, "fork to a host (a separate Service) or to static endpoints, "
                                   "or use --format istio, where subsets become DestinationRule subsets")
                self._errors[sid] = errs.items
                self._artifacts[sid] = self._build_service(svc, forks, model)
                self._sigs[sid] = sig
                changed.add(sid)
                self.stats["services_rebuilt"] += 1
        for gone in set(self._sigs) - live:
            del self._sigs[gone], self._artifacts[gone], self._errors[gone]
            changed.add(gone)
        for sid in sorted(live):  # unchanged services keep reporting what they cannot express
            diags.extend(self._errors[sid])
        all_ids = tuple(sorted(live))
        nodes: dict[str, NodeConfig] = {}
        groups: dict[tuple, NodeConfig] = {}
        for svc in model.services:
            if svc.depends_on is None:
                scope, key = all_ids, (svc.namespace, None)  # None: "everything", without hashing 1,000 ids per node
            else:  # resolve sorts dependencies by id
                scope = tuple(d.service for d in svc.depends_on)
                if not live.issuperset(scope):
                    scope = tuple(s for s in scope if s in live)
                key = (svc.namespace, scope)
            cfg = groups.get(key)
            if cfg is None:
                cfg = self._groups.get(key)
                if cfg is None or (changed if key[1] is None else not changed.isdisjoint(scope)):
                    cfg = self._build_group(svc.namespace, scope, model)
                    self.stats["groups_rebuilt"] += 1
                groups[key] = cfg
            nodes[svc.id] = cfg
        self._groups = groups
        return Snapshot(nodes, model.routing)

    def _build_service(self, svc: Service, forks, model: Model) -> _ServiceArtifacts:
        ports = svc.routable_ports
        same, other, clusters, endpoints = [], [], [], []
        for i, port in enumerate(ports):
            same.append(_ser(resources.virtual_host(svc, port, forks, model.routing, True, i == 0)))
            other.append(_ser(resources.virtual_host(svc, port, forks, model.routing, False, i == 0)))
            for c, cla in resources.clusters_for(svc, port, forks, self.eds):
                clusters.append(Resource.of(c.name, CLUSTER_TYPE, _ser(c)))
                if cla is not None:
                    endpoints.append(Resource.of(cla.cluster_name, ENDPOINT_TYPE, _ser(cla)))
        return _ServiceArtifacts(same, other, clusters, endpoints)

    def _build_group(self, namespace: str, scope: tuple[str, ...], model: Model) -> NodeConfig:
        parts = [_field(1, names.ROUTE_CONFIG.encode())]
        clusters: dict[str, Resource] = {}
        endpoints: dict[str, Resource] = {}
        for sid in scope:
            art = self._artifacts[sid]
            same_ns = model.service_by_id[sid].namespace == namespace
            parts.extend(_field(2, vh) for vh in (art.vhosts_same if same_ns else art.vhosts_other))
            for r in art.clusters:
                clusters[r.name] = r
            for r in art.endpoints:
                endpoints[r.name] = r
        route = Resource.of(names.ROUTE_CONFIG, ROUTE_TYPE, b"".join(parts))
        return NodeConfig({names.ROUTE_CONFIG: route}, dict(sorted(clusters.items())), dict(sorted(endpoints.items())))
