"""Incremental xDS compiler: `Model` → per-node snapshots of serialized resources.

Input: successive (lowered) models, whose destinations the Envoy backend can express (the backend
capability check in `backends.py` runs first). Output: `Snapshot` (the `xdsapi.Snapshot` protocol) =
for each node, its route configuration, clusters and load assignments as deterministic protobuf
bytes with content-hash versions, plus its listener (per port). Work grows with what changed:
- a service's virtual hosts and clusters are rebuilt only when its ports, endpoints or forks change;
- a node's route configuration is re-assembled (by concatenating cached virtual-host bytes, without
  re-serialising) only when a service in its scope changed; nodes with the same scope share one.
Identity rule (`xdsapi.Snapshot`): an unchanged node's `NodeConfig` is the same object as in the
previous snapshot, and no `NodeConfig` or its dicts are mutated after they are handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...model import Model, Routing, Service
from ...xdsapi import CLUSTER_TYPE, DEFAULT_OUTBOUND_PORT, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, Resource
from . import names, resources
from .nodes import SIDECAR, NodeKind


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


@dataclass(frozen=True, eq=False)  # compared by identity: see the identity rule above
class NodeConfig:
    """What one scope of nodes is told, minus the listener (whose port each node chooses)."""

    kind: NodeKind
    routes: dict[str, Resource]
    clusters: dict[str, Resource]
    endpoints: dict[str, Resource]


@dataclass
class Snapshot:
    nodes: dict[str, NodeConfig]  # node cluster (name.namespace) -> its config (shared between same-scope nodes)
    routing: Routing
    _listeners: dict[tuple[str, int], dict[str, Resource]] = field(default_factory=dict)

    @property
    def settings(self) -> Routing:
        return self.routing

    def listeners(self, kind: NodeKind, port: int) -> dict[str, Resource]:
        key = (kind.name, port)
        if key not in self._listeners:
            self._listeners[key] = {names.LISTENER: Resource.of(names.LISTENER, LISTENER_TYPE,
                                                                _ser(kind.listener(port, self.routing, None)))}
        return self._listeners[key]

    def resources(self, node: str, port: int = DEFAULT_OUTBOUND_PORT) -> dict[str, dict[str, Resource]]:
        """type URL -> name -> resource for one node; an unknown node gets an empty, valid config."""
        cfg = self.nodes.get(node)
        if cfg is None:
            return {LISTENER_TYPE: {}, ROUTE_TYPE: {}, CLUSTER_TYPE: {}, ENDPOINT_TYPE: {}}
        return {LISTENER_TYPE: self.listeners(cfg.kind, port), ROUTE_TYPE: cfg.routes,
                CLUSTER_TYPE: cfg.clusters, ENDPOINT_TYPE: cfg.endpoints}


class XdsCompiler:
    """Keeps what it built last time; `compile(model)` rebuilds only what the new model changed."""

    def __init__(self, eds: bool = True):
        self.eds = eds
        self._sigs: dict[str, tuple] = {}
        self._artifacts: dict[str, _ServiceArtifacts] = {}
        self._groups: dict[tuple, NodeConfig] = {}
        self._routing: Routing | None = None
        self.stats = {"services_rebuilt": 0, "groups_rebuilt": 0}

    def compile(self, model: Model) -> Snapshot:
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
                self._artifacts[sid] = self._build_service(svc, forks, model)
                self._sigs[sid] = sig
                changed.add(sid)
                self.stats["services_rebuilt"] += 1
        for gone in set(self._sigs) - live:
            del self._sigs[gone], self._artifacts[gone]
            changed.add(gone)
        all_ids = tuple(sorted(live))
        frozen_live = frozenset(live)
        nodes: dict[str, NodeConfig] = {}
        groups: dict[tuple, NodeConfig] = {}
        for svc in model.services:
            kind = SIDECAR
            key, scope = kind.scope(svc, frozen_live, all_ids)
            cfg = groups.get(key)
            if cfg is None:
                cfg = self._groups.get(key)
                everything = key[2] is None
                if cfg is None or (changed if everything else not changed.isdisjoint(scope)):
                    cfg = self._build_group(kind, svc.namespace, scope, model)
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

    def _build_group(self, kind: NodeKind, namespace: str, scope: tuple[str, ...], model: Model) -> NodeConfig:
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
        return NodeConfig(kind, {names.ROUTE_CONFIG: route}, dict(sorted(clusters.items())),
                          dict(sorted(endpoints.items())))
