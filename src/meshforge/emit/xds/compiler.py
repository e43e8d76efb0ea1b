"""Incremental xDS compiler: `Model` → per-node snapshots of serialized resources.

Input: successive (lowered) models, whose destinations the Envoy backend can express (the backend
capability check in `backends.py` runs first). Output: `CompiledSnapshot` (the `xdsapi.Snapshot` protocol) =
for each node, its route configuration, clusters and load assignments as deterministic protobuf
bytes with content-hash versions, plus its listener (per port). Work grows with what changed:
- a service's virtual hosts and clusters are rebuilt only when its ports, endpoints or forks change;
- a node's route configuration is re-assembled (by concatenating cached virtual-host bytes, without
  re-serialising) only when a service in its scope changed; nodes with the same scope share one.
Identity rule (`xdsapi.Snapshot`): an unchanged node's `NodeConfig` is the same object as in the
previous snapshot, and no `NodeConfig` or its dicts are mutated after they are handed out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field

from envoy.config.route.v3 import route_components_pb2

from ...model import Edge, LocalFork, Model, Routing, Service
from ...protowire import field
from ...sortedmap import SortedMap
from ...xdsapi import (
    CLUSTER_TYPE,
    DEFAULT_OUTBOUND_PORT,
    EDGE_NODE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    TUNNEL_NODE,
    Resource,
    ResourceSet,
)
from . import listeners, naming, preview_auth, resources, tunnel
from .nodes import EDGE, SIDECAR, TUNNEL, NodeKind
from .resources import AccessLogs


def _ser(msg) -> bytes:
    return msg.SerializeToString(deterministic=True)


_UNKNOWN_HOST = field(2, _ser(resources.unknown_host_virtual_host()))  # the catch-all, last (matched by '*')


def _port_sig(p) -> tuple:
    return p.name, p.number, p.protocol, p.cluster_protocol


@dataclass
class _ServiceArtifacts:
    vhosts_same: list[bytes]  # one per routable port, for nodes in the service's namespace
    clusters: list[Resource]
    endpoints: list[Resource]
    service: Service
    _other: list[bytes] | None = None
    _framed: dict[bool, bytes] = dataclass_field(default_factory=dict)  # same namespace? -> the fields

    def framed(self, same_namespace: bool) -> bytes:
        """The virtual hosts as fields of a route configuration, for nodes in (or outside) its namespace: what
        each group holding the service concatenates, framed once."""
        out = self._framed.get(same_namespace)
        if out is None:
            out = self._framed[same_namespace] = b"".join(
                field(2, vh) for vh in (self.vhosts_same if same_namespace else self.vhosts_other))
        return out

    @property
    def vhosts_other(self) -> list[bytes]:
        """For nodes elsewhere: the same virtual hosts without the bare-name domains. Made on first use (a mesh
        in one namespace never needs them), from the bytes: only the domains differ."""
        if self._other is None:
            svc, other = self.service, []
            for i, (port, body) in enumerate(zip(svc.routable_ports, self.vhosts_same)):
                vh = route_components_pb2.VirtualHost.FromString(body)
                del vh.domains[:]
                vh.domains.extend(resources.domains(svc, port, False, i == 0))
                other.append(_ser(vh))
            self._other = other
        return self._other


@dataclass(frozen=True, eq=False)  # compared by identity: see the identity rule above
class NodeConfig:
    """What one scope of nodes is told, minus the listener (whose port each node chooses)."""

    kind: NodeKind
    routes: ResourceSet
    clusters: ResourceSet
    endpoints: ResourceSet
    local_forks: tuple[LocalFork, ...] = ()  # the tunnel node's: who may attach (its accept listener)


@functools.lru_cache(maxsize=1024)
def _listener(kind: NodeKind, host: str, port: int, routing: Routing, edge: Edge | None,
              access_logs: AccessLogs | None) -> ResourceSet:
    """A node's listener (each node picks its port and address): built once per distinct one, for every
    snapshot that has the same settings (lru_cache is safe to call from any thread: the compiler's worker and the loop)."""
    lis = kind.listener(host, port, routing, edge, None, access_logs)
    return ResourceSet({lis.name: Resource.of(lis.name, LISTENER_TYPE, _ser(lis))})


@functools.lru_cache(maxsize=1024)
def _transparent_listener(host: str, port: int, routing: Routing, edge: Edge | None, http_ports: frozenset[int],
                          access_logs: AccessLogs | None) -> ResourceSet:
    lis = listeners.transparent_listener(host, port, routing, edge, http_ports, access_logs)
    return ResourceSet({lis.name: Resource.of(lis.name, LISTENER_TYPE, _ser(lis))})


@functools.lru_cache(maxsize=64)
def _tunnel_listeners(cfg: NodeConfig, data: tuple[str, int], accept: tuple[str, int] | None,
                      routing: Routing, edge: Edge | None) -> ResourceSet:
    """The tunnel node's listeners: data (where sidecars send), the internal hop and, when its bootstrap names
    an address for laptops and some fork goes to a laptop, the accept listener."""
    out = [listeners.tunnel_listener(*data, routing, edge), tunnel.internal_listener()]
    if accept is not None and (lis := tunnel.accept_listener(*accept, cfg.local_forks)) is not None:
        out.append(lis)
    return ResourceSet((lis.name, Resource.of(lis.name, LISTENER_TYPE, _ser(lis)))
                       for lis in sorted(out, key=lambda x: x.name))


_ROUTES_HEAD = field(1, naming.ROUTE_CONFIG.encode())
_TRANSPARENT_HEAD = field(1, naming.TRANSPARENT_ROUTE_CONFIG.encode())
_PASSTHROUGH_HOST = field(2, _ser(resources.passthrough_virtual_host()))
_EMPTY = ResourceSet()  # an unknown node's every type
_PASSTHROUGH = Resource.of(naming.PASSTHROUGH_CLUSTER, CLUSTER_TYPE, _ser(resources.passthrough_cluster()))


@functools.lru_cache(maxsize=4096)
def _transparent(cfg: NodeConfig) -> tuple[ResourceSet, ResourceSet]:
    """(routes, clusters) of a transparent sidecar of `cfg`'s scope: its routes under the transparent name with
    the passthrough catch-all instead of the 404 (the same bytes in between), and the passthrough cluster.
    Made on the first transparent node's request, once per scope and snapshot (NodeConfig hashes by identity)."""
    body = cfg.routes[naming.ROUTE_CONFIG].body
    if not (body.startswith(_ROUTES_HEAD) and body.endswith(_UNKNOWN_HOST)):
        raise ValueError("a sidecar's route configuration is not in the form _build_group writes")
    routes = _TRANSPARENT_HEAD + body[len(_ROUTES_HEAD):len(body) - len(_UNKNOWN_HOST)] + _PASSTHROUGH_HOST
    return (ResourceSet({naming.TRANSPARENT_ROUTE_CONFIG: Resource.of(naming.TRANSPARENT_ROUTE_CONFIG, ROUTE_TYPE, routes)}),
            ResourceSet(sorted({**cfg.clusters, naming.PASSTHROUGH_CLUSTER: _PASSTHROUGH}.items())))


@dataclass(frozen=True)
class CompiledSnapshot:
    """Immutable once made: the server reads it on the event loop while the next one is compiled (in a worker thread for a large change), and the admin server decodes one in a worker thread."""

    nodes: dict[str, NodeConfig]  # node cluster (name.namespace, or EDGE_NODE) -> its config (shared by same-scope nodes)
    routing: Routing
    edge: Edge | None = None
    access_logs: AccessLogs | None = None  # listeners send access logs to serve (over ADS only)
    http_ports: frozenset[int] = frozenset()  # every port some service routes HTTP on (transparent listeners)

    @property
    def settings(self) -> Routing:
        return self.routing

    def listeners(self, kind: NodeKind, port: int, host: str | None = None,
                  transparent: bool = False) -> ResourceSet:
        if transparent and kind is SIDECAR:
            return _transparent_listener(host or kind.default_host, port, self.routing, self.edge, self.http_ports,
                                         self.access_logs)
        return _listener(kind, host or kind.default_host, port, self.routing, self.edge, self.access_logs)

    def resources(self, node: str, port: int = DEFAULT_OUTBOUND_PORT, host: str | None = None,
                  transparent: bool = False, accept: tuple[str, int] | None = None) -> dict[str, ResourceSet]:
        """type URL -> name -> resource for one node; an unknown node gets an empty, valid config. A
        transparent sidecar (its bootstrap's `--transparent`) gets the capture listener, the routes with
        the passthrough catch-all and the passthrough cluster; the tunnel node, its listener for laptops at
        `accept`."""
        cfg = self.nodes.get(node)
        if cfg is None:
            return {LISTENER_TYPE: _EMPTY, ROUTE_TYPE: _EMPTY, CLUSTER_TYPE: _EMPTY, ENDPOINT_TYPE: _EMPTY}
        if cfg.kind is TUNNEL:
            lis = _tunnel_listeners(cfg, (host or TUNNEL.default_host, port), accept, self.routing, self.edge)
            return {LISTENER_TYPE: lis, ROUTE_TYPE: cfg.routes, CLUSTER_TYPE: cfg.clusters, ENDPOINT_TYPE: cfg.endpoints}
        if transparent and cfg.kind is SIDECAR:
            routes, clusters = _transparent(cfg)
            return {LISTENER_TYPE: self.listeners(cfg.kind, port, host, True), ROUTE_TYPE: routes,
                    CLUSTER_TYPE: clusters, ENDPOINT_TYPE: cfg.endpoints}
        return {LISTENER_TYPE: self.listeners(cfg.kind, port, host), ROUTE_TYPE: cfg.routes,
                CLUSTER_TYPE: cfg.clusters, ENDPOINT_TYPE: cfg.endpoints}


def differences(got: CompiledSnapshot, want: CompiledSnapshot) -> list[str]:
    """How two snapshots differ: nodes, settings, and each resource's bytes."""
    out = []
    if (got.routing, got.edge, got.access_logs) != (want.routing, want.edge, want.access_logs):
        out.append("xds: the snapshots' settings differ")
    for node in sorted(got.nodes.keys() ^ want.nodes.keys()):
        out.append(f"xds: node {node} only {'incrementally' if node in got.nodes else 'from scratch'}")
    for node in sorted(got.nodes.keys() & want.nodes.keys()):
        a, b = got.nodes[node], want.nodes[node]
        if a.kind is not b.kind:
            out.append(f"xds: node {node} is another kind")
        if a.local_forks != b.local_forks:
            out.append(f"xds: node {node}: the forks to laptops differ")
        for part in ("routes", "clusters", "endpoints"):
            x, y = getattr(a, part), getattr(b, part)
            diff = sorted(n for n in x.keys() | y.keys() if n not in x or n not in y or x[n].body != y[n].body)
            if diff:
                out.append(f"xds: node {node}: {part} {', '.join(diff[:3])}{' ...' if len(diff) > 3 else ''} differ")
    return out


class XdsCompiler:
    """Keeps what it built last time; `compile(model)` rebuilds only what the new model changed."""

    def __init__(self, eds: bool = True, access_logs: AccessLogs | None = AccessLogs()):
        self.eds = eds
        self.access_logs = access_logs
        self._sigs: dict[str, tuple] = {}
        self._artifacts: dict[str, _ServiceArtifacts] = {}
        self._groups: dict[tuple, NodeConfig] = {}
        self._routing: Routing | None = None
        self._edge: tuple | None = None  # (signature, NodeConfig) of the edge node
        self._tunnel: tuple | None = None  # (signature, NodeConfig) of the tunnel node
        self._previews: dict[tuple[str, str], bytes] = {}  # (key, cluster) -> preview virtual host, as a field
        self._preview_parts: SortedMap[bytes] = SortedMap()  # key -> its preview virtual host, in key order
        self._edge_frame: tuple[bytes, bytes] = (b"", b"")  # the edge route config's bytes before and after them
        # what the last compile saw, for the next one to look only at what changed
        self._services: tuple | None = None
        self._nodes: dict[str, NodeConfig] | None = None
        self._live: frozenset[str] = frozenset()
        self._by_id: dict[str, Service] = {}
        self._key_forks: dict[str, tuple] = {}  # routing key -> its forks (compared by identity)
        self._fbs: dict[str, dict[str, object]] = {}  # service id -> routing key -> fork
        self._members: dict[tuple, list[str]] = {}  # group key -> the nodes sharing it
        self._scopes: dict[tuple, tuple[str, ...]] = {}  # group key -> the services it is told about
        self._in_scope: dict[str, set[tuple]] = {}  # service id -> the group keys whose scope holds it
        self._told_all: list[tuple] = []  # the group keys whose scope is every service
        self._node_key: dict[str, tuple] = {}  # node -> its group key
        self._dependents: dict[str, set[str]] = {}  # service id -> the nodes whose dependencies name it
        self._all_ids: tuple[str, ...] = ()  # the live services, sorted (the scope of nodes told everything)
        self._token: object | None = None  # the revision of the model compiled last
        self.stats = {"services_rebuilt": 0, "groups_rebuilt": 0}
        self._http_ports: tuple[object, frozenset[int]] = (None, frozenset())  # (the services, their HTTP ports)
        self._port_uses: dict[int, int] = {}  # HTTP port -> how many live services route it

    def compile(self, model: Model) -> CompiledSnapshot:
        """A snapshot of `model`. When its services are the very objects of the last model (resolution
        reused them) only the keys whose forks changed are looked at, and only the groups whose scope
        holds a rebuilt service are re-assembled: the work follows the change, not the mesh."""
        change = model.change
        changed_keys = None  # None: not known which keys changed
        follows = change is not None and self._token is not None and change.parent is self._token and \
            not change.settings
        if model.routing == self._routing and model.services is self._services and self._nodes is not None:
            # the change says which keys differ from the model compiled last: look at those alone
            changed_keys = change.keys_since(self._token) if change is not None else None
            nodes, live = self._compile_changes(model, changed_keys)
        elif model.routing == self._routing and self._nodes is not None and follows and \
                change.service_ids is not None:
            # resolution says which services and keys differ: those, and the groups that hold them
            changed_keys = change.keys
            nodes, live = self._compile_services(model, change.service_ids, change.keys)
        else:
            nodes, live = self._compile_all(model)
        self._token = change.token if change is not None else None
        if model.edge is not None and model.edge.service in live:
            nodes[EDGE_NODE] = self._edge_node(model, model.edge, changed_keys)
        else:
            self._edge = None
        if model.tunnel is not None:
            nodes[TUNNEL_NODE] = self._tunnel_node(model)
        if self._http_ports[0] is not model.services:  # the services changed: once per such compile
            ports = frozenset(self._port_uses)
            self._http_ports = (model.services, self._http_ports[1] if ports == self._http_ports[1] else ports)
        return CompiledSnapshot(nodes, model.routing, model.edge, self.access_logs, self._http_ports[1])

    def verify(self, model: Model, snapshot: CompiledSnapshot) -> list[str]:
        """`model` compiled again by a fresh compiler: how `snapshot` (this one's result for it) differs,
        node by node and resource by resource (empty: not at all)."""
        fresh = XdsCompiler(self.eds, self.access_logs).compile(replace(model, change=None))
        return differences(snapshot, fresh)

    def _forks_of(self, sid: str) -> tuple:
        """((routing key, fork), ...) sorted by key: what the service's routing table holds."""
        return tuple(sorted(self._fbs.get(sid, {}).items()))

    def _service(self, svc: Service, model: Model) -> bool:
        """Rebuild a service's artifacts when its signature changed; True when it did."""
        sid = svc.id
        forks = self._forks_of(sid)
        sig = (svc.name, svc.namespace, svc.cluster_domain, tuple(_port_sig(p) for p in svc.ports), svc.endpoints,
               tuple((k, f.destination) for k, f in forks))  # no positions: a line moved changes no bytes
        if self._sigs.get(sid) == sig:
            return False
        self._artifacts[sid] = self._build_service(svc, forks, model)
        self._sigs[sid] = sig
        self.stats["services_rebuilt"] += 1
        return True

    def _compile_all(self, model: Model) -> tuple[dict[str, NodeConfig], frozenset[str]]:
        if model.routing != self._routing:  # carriers changed: every virtual host changes
            self._sigs.clear()
            self._routing = model.routing
        self._key_forks = {kr.key: kr.forks for kr in model.keys}
        self._fbs = {}
        for kr in model.keys:
            for f in kr.forks:
                self._fbs.setdefault(f.service, {})[kr.key] = f
        changed: set[str] = set()
        live = set()
        for svc in model.services:
            if not svc.routable_ports:
                continue
            live.add(svc.id)
            if self._service(svc, model):
                changed.add(svc.id)
        for gone in set(self._sigs) - live:
            del self._sigs[gone], self._artifacts[gone]
            changed.add(gone)
        all_ids = tuple(sorted(live))
        frozen_live = frozenset(live)
        nodes: dict[str, NodeConfig] = {}
        groups: dict[tuple, NodeConfig] = {}
        members: dict[tuple, list[str]] = {}
        scopes: dict[tuple, tuple[str, ...]] = {}
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
                scopes[key] = scope
            nodes[svc.id] = cfg
            members.setdefault(key, []).append(svc.id)
        self._groups, self._members, self._scopes = groups, members, scopes
        self._told_all = [k for k in groups if k[2] is None]  # groups told every service
        self._in_scope = {}
        for key, scope in scopes.items():
            if key[2] is not None:
                for sid in scope:
                    self._in_scope.setdefault(sid, set()).add(key)
        self._node_key = {node: key for key, ids in members.items() for node in ids}
        self._dependents, self._port_uses = {}, {}
        for svc in model.services:
            self._index(svc, 1)
        self._all_ids = all_ids
        self._services, self._live, self._nodes = model.services, frozen_live, dict(nodes)
        self._by_id = {svc.id: svc for svc in model.services}
        return nodes, frozen_live

    def _compile_changes(self, model: Model, keys: frozenset[str] | None) -> tuple[dict[str, NodeConfig], frozenset[str]]:
        """The services are those of the last model: look at the routing keys that changed (`keys`, or,
        when not known, every key compared with the last model's by identity)."""
        if keys is None:
            current = {kr.key: kr.forks for kr in model.keys}
            keys = current.keys() | self._key_forks.keys()
            forks_of = current.get
        else:
            def forks_of(key: str):
                kr = model.key(key)
                return kr.forks if kr is not None else None
        touched = self._take_keys(keys, forks_of)
        by_id = self._by_id
        changed = {sid for sid in sorted(touched) if sid in self._live and self._service(by_id[sid], model)}
        nodes = dict(self._nodes)  # the last snapshot's dict stays as it was handed out
        self._rebuild_groups(changed, model, nodes)
        self._nodes = dict(nodes)
        return nodes, self._live

    def _take_keys(self, keys, forks_of) -> set[str]:
        """Take the forks of `keys` (forks_of(key): its forks now, None when it is gone): the services whose
        routing tables they touch."""
        touched: set[str] = set()
        for key in keys:
            forks, old = forks_of(key), self._key_forks.get(key)
            if old is forks:
                continue
            for f in old or ():
                touched.add(f.service)
                self._fbs.get(f.service, {}).pop(key, None)
            for f in forks or ():
                touched.add(f.service)
                self._fbs.setdefault(f.service, {})[key] = f
            if forks is None:
                del self._key_forks[key]
            else:
                self._key_forks[key] = forks
        return touched

    def _rebuild_groups(self, changed: set[str], model: Model, nodes: dict[str, NodeConfig],
                        done: frozenset = frozenset()) -> None:
        """Re-assemble the groups whose scope holds a rebuilt service (`changed`), and those told everything,
        but those in `done`; point their members at them in `nodes`."""
        if not changed:
            return
        affected = {k for sid in changed for k in self._in_scope.get(sid, ())}
        affected.update(self._told_all)
        for key in sorted(affected - done, key=repr):
            cfg = self._build_group(SIDECAR, key[1], self._scopes[key], model)
            self.stats["groups_rebuilt"] += 1
            self._groups[key] = cfg
            for node in self._members[key]:
                nodes[node] = cfg

    def _compile_services(self, model: Model, service_ids: frozenset[str],
                          keys: frozenset[str]) -> tuple[dict[str, NodeConfig], frozenset[str]]:
        """The model follows the one compiled last, and resolution says which services (`service_ids`) and
        routing keys differ: take those, rebuild the services whose signature changed, move the nodes whose
        scope changed (their own dependencies, or a dependency that came, went or stopped being routable) to
        their groups, and re-assemble the groups that hold a rebuilt service."""
        def forks_of(key: str):
            kr = model.key(key)
            return kr.forks if kr is not None else None

        touched = self._take_keys(keys, forks_of)
        by_id = self._by_id
        came, went = set(), set()  # services that became routable, or stopped being (or went)
        moved: set[str] = set()  # nodes whose group key may differ
        for sid in sorted(service_ids):
            svc, old = model.service(sid), by_id.get(sid)
            if old is not None:
                self._index(old, -1)
            if svc is None:
                by_id.pop(sid, None)
            else:
                by_id[sid] = svc
                self._index(svc, 1)
            now_live = svc is not None and bool(svc.routable_ports)
            if now_live != (sid in self._live):
                (came if now_live else went).add(sid)
                moved |= self._dependents.get(sid, set())
            moved.add(sid)
        live_changed = bool(came or went)
        if live_changed:
            self._live = (self._live - went) | came
            self._all_ids = tuple(sorted(self._live))
        changed: set[str] = set()
        for sid in sorted(touched | service_ids):
            if sid in self._live:
                if self._service(by_id[sid], model):
                    changed.add(sid)
            elif sid in self._sigs:
                del self._sigs[sid], self._artifacts[sid]
                changed.add(sid)
        nodes = dict(self._nodes)
        built: set[tuple] = set()
        for node in sorted(moved):
            svc = by_id.get(node)
            key, scope = SIDECAR.scope(svc, self._live, self._all_ids) if svc is not None else (None, ())
            old_key = self._node_key.get(node)
            if old_key == key:
                continue  # the same group (a declaration that moved, or changed what no scope reads)
            if old_key is not None:
                del self._node_key[node]
                members = self._members[old_key]
                members.remove(node)
                if not members:
                    self._drop_group(old_key)
            if svc is None:
                nodes.pop(node, None)
                continue
            if key not in self._groups:
                self._groups[key] = self._build_group(SIDECAR, svc.namespace, scope, model)
                self.stats["groups_rebuilt"] += 1
                self._scopes[key], self._members[key] = scope, []
                built.add(key)
                if key[2] is None:
                    self._told_all.append(key)
                else:
                    for sid in scope:
                        self._in_scope.setdefault(sid, set()).add(key)
            self._members[key].append(node)
            self._node_key[node] = key
            nodes[node] = self._groups[key]
        if live_changed:
            for key in self._told_all:
                self._scopes[key] = self._all_ids
            changed.add(None)  # every group told everything: its scope changed
        self._rebuild_groups(changed, model, nodes, frozenset(built))
        self._services, self._nodes = model.services, dict(nodes)
        return nodes, self._live

    def _index(self, svc: Service, sign: int) -> None:
        """Count `svc` in (sign 1) or out of (-1) the indexes kept across compiles: whom its dependencies name,
        and the HTTP ports live services route."""
        for d in svc.depends_on or ():
            if sign > 0:
                self._dependents.setdefault(d.service, set()).add(svc.id)
            else:
                self._dependents[d.service].discard(svc.id)
        for n in {p.number for p in svc.routable_ports}:
            self._port_uses[n] = self._port_uses.get(n, 0) + sign
            if not self._port_uses[n]:
                del self._port_uses[n]

    def _drop_group(self, key: tuple) -> None:
        del self._groups[key], self._members[key]
        scope = self._scopes.pop(key)
        if key[2] is None:
            self._told_all.remove(key)
        else:
            for sid in scope:
                self._in_scope[sid].discard(key)
                if not self._in_scope[sid]:
                    del self._in_scope[sid]

    def _edge_node(self, model: Model, edge: Edge, keys: frozenset[str] | None) -> NodeConfig:
        """The edge's public host (the edge service's routing table under the public names), a preview host
        per active key, a 404 for other preview hosts, and the edge service's clusters. The preview hosts
        are kept as serialised parts in key order: when the edge and its service are as before and the
        changed keys are known (`keys`), only those keys' parts are redone; the config is the same object
        as before when its bytes are."""
        svc = self._by_id.get(edge.service) or model.service_by_id[edge.service]
        art = self._artifacts[edge.service]
        port = next(p for p in svc.ports if p.number == edge.port)
        forked = self._fbs.get(edge.service, {})

        signed = edge.preview_auth is not None

        def part(key: str) -> bytes:
            cluster = naming.cluster(port.number, svc.fqdn, key if key in forked else "")
            not_before = model.key(key).not_before if signed else None
            vh = self._previews.get((key, cluster, not_before))
            if vh is None:
                vh = resources.preview_virtual_host(edge.preview_host(key), key, cluster)
                vh = field(2, _ser(preview_auth.signed(vh, key, not_before) if signed else vh))
                self._previews[(key, cluster, not_before)] = vh
            return vh

        base = (edge, art)
        if self._edge is None or self._edge[0] != base or keys is None:
            head = [field(1, naming.EDGE_ROUTE_CONFIG.encode())]
            if edge.hosts:
                head.append(field(2, _ser(resources.virtual_host(
                    svc, port, self._forks_of(edge.service), model.routing, True, True, list(edge.hosts)))))
            unknown = resources.unknown_preview_virtual_host(edge) if edge.preview_domain else None
            if unknown is not None and signed:
                preview_auth.signed(unknown, None)
            tail = (field(2, _ser(unknown)) if unknown is not None else b"") + \
                field(2, _ser(resources.edge_unknown_host_virtual_host(edge)))
            self._edge_frame = (b"".join(head), tail)
            if self._edge is None or self._edge[0][0] != edge:
                self._previews = {}  # the hosts they name may differ
            self._preview_parts = SortedMap((kr.key, part(kr.key)) for kr in model.keys) if edge.preview_domain \
                else SortedMap()
            live = set(self._preview_parts.keys)
            self._previews = {k: v for k, v in self._previews.items() if k[0] in live}
        elif edge.preview_domain:
            for key in sorted(keys):
                if model.key(key) is not None:
                    self._preview_parts.set(key, part(key))
                elif self._preview_parts.get(key) is not None:
                    self._preview_parts.set(key, None)
                    for cached in [k for k in self._previews if k[0] == key]:
                        del self._previews[cached]  # what the cache held for the key goes with it
        head, tail = self._edge_frame
        body = b"".join((head, *self._preview_parts.values, tail))
        if self._edge is not None and self._edge[0] == base and self._edge[1].routes[naming.EDGE_ROUTE_CONFIG].body == body:
            return self._edge[1]
        route = Resource.of(naming.EDGE_ROUTE_CONFIG, ROUTE_TYPE, body)
        cfg = NodeConfig(EDGE, ResourceSet({naming.EDGE_ROUTE_CONFIG: route}),
                         ResourceSet((r.name, r) for r in sorted(art.clusters, key=lambda r: r.name)),
                         ResourceSet((r.name, r) for r in sorted(art.endpoints, key=lambda r: r.name)))
        self._edge = (base, cfg)
        self.stats["groups_rebuilt"] += 1
        return cfg

    def _tunnel_node(self, model: Model) -> NodeConfig:
        """The tunnel node's configuration: rebuilt when the forks to laptops, the services they fork or the
        routing settings differ (a few resources: each fork to a laptop is one route and one cluster)."""
        forks = model.local_forks
        by_id = self._by_id or model.service_by_id
        services = {sid: by_id[sid] for sid in sorted({f.service for f in forks})}
        sig = (forks, tuple(services.values()), model.routing)
        if self._tunnel is not None and self._tunnel[0] == sig:
            return self._tunnel[1]
        rc = tunnel.route_configuration(forks, services, model.routing)
        clusters, endpoints = {}, {}
        for c, cla in tunnel.clusters(forks, services, self.eds):
            clusters[c.name] = Resource.of(c.name, CLUSTER_TYPE, _ser(c))
            if cla is not None:
                endpoints[cla.cluster_name] = Resource.of(cla.cluster_name, ENDPOINT_TYPE, _ser(cla))
        cfg = NodeConfig(TUNNEL, ResourceSet({rc.name: Resource.of(rc.name, ROUTE_TYPE, _ser(rc))}),
                         ResourceSet(sorted(clusters.items())), ResourceSet(sorted(endpoints.items())), forks)
        self._tunnel = (sig, cfg)
        return cfg

    def _build_service(self, svc: Service, forks, model: Model) -> _ServiceArtifacts:
        ports = svc.routable_ports
        same, clusters, endpoints = [], [], []
        for i, port in enumerate(ports):
            same.append(_ser(resources.virtual_host(svc, port, forks, model.routing, True, i == 0)))
            for c, cla in resources.clusters_for(svc, port, forks, self.eds):
                clusters.append(Resource.of(c.name, CLUSTER_TYPE, _ser(c)))
                if cla is not None:
                    endpoints.append(Resource.of(cla.cluster_name, ENDPOINT_TYPE, _ser(cla)))
        return _ServiceArtifacts(same, clusters, endpoints, svc)

    def _build_group(self, kind: NodeKind, namespace: str, scope: tuple[str, ...], model: Model) -> NodeConfig:
        parts = [_ROUTES_HEAD]
        clusters: dict[str, Resource] = {}
        endpoints: dict[str, Resource] = {}
        for sid in scope:
            art = self._artifacts[sid]
            parts.append(art.framed(art.service.namespace == namespace))
            for r in art.clusters:
                clusters[r.name] = r
            for r in art.endpoints:
                endpoints[r.name] = r
        parts.append(_UNKNOWN_HOST)
        route = Resource.of(naming.ROUTE_CONFIG, ROUTE_TYPE, b"".join(parts))
        return NodeConfig(kind, ResourceSet({naming.ROUTE_CONFIG: route}), ResourceSet(sorted(clusters.items())),
                          ResourceSet(sorted(endpoints.items())))
