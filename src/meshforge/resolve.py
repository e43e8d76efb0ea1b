"""Resolution: declarations → the immutable `Model`.

Input: `Decls` and the clock. Output: `Model` plus diagnostics (MF2xx). References are bound,
route groups expanded, conflicts found, expiry applied. Every routing key is resolved on its own
(`_key_routes`), so a changed sandbox changes only its own key's entry and the services it forks;
everything is sorted, so the model does not depend on the order of files or documents.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import assert_never

from .diagnostics import Diagnostics, Span, did_you_mean
from .model import (
    DEFAULT_CLUSTER_DOMAIN,
    Change,
    Dependency,
    Edge,
    EndpointsDestination,
    Fork,
    HostDestination,
    KeyRoutes,
    LocalDestination,
    Model,
    Port,
    PreviewAuth,
    Routing,
    Sandbox,
    Service,
    ServiceIndex,
    SubsetDestination,
    Tunnel,
    UserObject,
    WorkloadDestination,
    rfc3339,
)
from .names import ROUTING_KEY_HINT, valid_routing_key
from .sortedmap import SortedMap
from .spec.decls import Decls, EdgeDecl, RouteGroupDecl, SandboxDecl, ServiceDecl, TunnelDecl


def parse_time(value: str) -> datetime:
    v = value.strip().replace("z", "Z").replace("t", "T")
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v.replace(" ", "T", 1) if "T" not in v else v)
    if dt.tzinfo is None:
        raise ValueError("a time zone is required (Z or +hh:mm)")
    return dt


def _settings(decls: Decls, diags: Diagnostics) -> tuple[Routing, str]:
    chosen: dict[str, tuple[str, Span]] = {}
    for s in sorted(decls.settings, key=lambda s: s.span):
        for setting, value in (("baggageKey", s.baggage_key), ("header", s.header), ("clusterDomain", s.cluster_domain)):
            if value is None:
                continue
            if setting in chosen and chosen[setting][0] != value:
                first = chosen[setting][1]
                diags.error("MF210", f"{setting} {value!r} conflicts with {chosen[setting][0]!r} set at {first.at()}",
                            Span(s.span.file, s.span.line, s.span.column, "/spec"),
                            "these settings are mesh-wide: set them in one Baseline, or to the same value")
            else:
                chosen.setdefault(setting, (value, s.span))
    routing = Routing()
    if "baggageKey" in chosen:
        routing = Routing(chosen["baggageKey"][0], routing.header)
    if "header" in chosen:
        routing = Routing(routing.baggage_key, chosen["header"][0])
    return routing, chosen.get("clusterDomain", (DEFAULT_CLUSTER_DOMAIN, None))[0]


class _Names(ServiceIndex):
    """Service lookup with did-you-mean hints."""

    def hint(self, ref: str, namespace: str) -> str | None:
        local = [s.name for s in self.by_id.values() if s.namespace == namespace]
        return did_you_mean(ref, local) or did_you_mean(ref, self.by_id)


@dataclass
class Memo:
    """What the last resolve built, reused where its inputs are the very same declaration objects (a
    `Workspace` keeps each unchanged file's declarations): the service table and the sandbox table, each
    updated by the declarations that came and went (the sandboxes also by the services that changed
    under them). One change then re-resolves what it touches, not the mesh."""

    service_decls: list = field(default_factory=list)  # the list of declarations it last saw (by identity)
    settings: tuple | None = None
    services: _ServiceTable | None = None
    table: _SandboxTable | None = None
    token: object | None = None  # the revision token of the last model
    group_keys: dict[str, KeyRoutes] = field(default_factory=dict)  # the keys route groups held in it
    groups: dict[int, tuple] = field(default_factory=dict)  # each route group's last resolution
    objects: list | None = None  # the input objects' identities it last saw (a list, compared by identity) ...
    inputs: frozenset = frozenset()  # ... and as a set
    edge: Edge | None = None  # the edge of the last model
    tunnel: Tunnel | None = None  # the tunnel of the last model


def _same(a: list, b: list) -> bool:
    return a is b or (len(a) == len(b) and all(x is y for x, y in zip(a, b)))


class _ServiceTable:
    """Every service declaration, and what it resolves to, kept from one resolve to the next and updated by
    the declarations that came and went (`update`), so a Baseline edit costs the services it touches, not
    the mesh. The rules are those of one pass over the declarations sorted by position (`_declaration`
    for one service id); a service's dependencies are bound again when its declaration changed, or, when
    services came or went, when one of them found none (it may now; its hint may change) or found one that
    went. A reference finds the same service as long as that service is there (names are DNS labels, ids
    unique), so nothing else can change. A full resolve is this table filled from empty."""

    def __init__(self, cluster_domain: str):
        self.cluster_domain = cluster_domain
        self.decls: dict[int, ServiceDecl] = {}  # id -> every declaration
        self.by_id: dict[str, list[ServiceDecl]] = {}  # service id -> its declarations, sorted by position
        self.decl_by_id: dict[str, ServiceDecl] = {}  # service id -> the declaration it resolves from
        self.names = _Names(())  # the services, bound, by every name (the sandbox table looks forks up in it)
        self.sorted: SortedMap[Service] = SortedMap()  # the same, by id
        self.services: tuple[Service, ...] = ()  # ... as the model holds them
        self.decl_noise: dict[str, list] = {}  # service id -> MF203/MF102/MF212 about its declarations
        self.bind_noise: dict[str, list] = {}  # service id -> what binding its dependencies reported
        self.inferring: dict[str, list[tuple]] = {}  # service id -> what env inference found for it
        self.dependents: dict[str, set[str]] = {}  # service id -> the services whose dependencies found it
        self.targets: dict[str, set[str]] = {}  # the other way round
        self.unresolved: set[str] = set()  # services with a dependency that found none
        self.diags: list = []  # everything above, as one list

    def update(self, removed: list[ServiceDecl], added: list[ServiceDecl]) -> tuple[set[str], set[str], bool]:
        """Apply a change; return (the ids of the services whose Service or declaration may differ, those of
        them whose difference a fork can see (`_seen_by_forks`), whether services came or went)."""
        touched: set[str] = set()
        for d in removed:
            del self.decls[id(d)]
            same = self.by_id[d.id]
            del same[next(i for i, x in enumerate(same) if x is d)]
            if not same:
                del self.by_id[d.id]
            touched.add(d.id)
        for d in added:
            self.decls[id(d)] = d
            bisect.insort(self.by_id.setdefault(d.id, []), d, key=_span_of)
            touched.add(d.id)
        before: dict[str, tuple] = {}
        gone: set[str] = set()
        came_or_went = False
        for i in sorted(touched):
            old = self.decl_by_id.get(i)
            before[i] = (old, self.sorted.get(i))
            sub = Diagnostics()
            decl = self._declaration(i, sub)
            if sub.collected():
                self.decl_noise[i] = sub.collected()
            else:
                self.decl_noise.pop(i, None)
            if decl is None:
                self.decl_by_id.pop(i, None)
                self.names.remove(i)
                if old is not None:
                    came_or_went = True
                    gone.add(i)
            else:
                self.decl_by_id[i] = decl
                came_or_went |= old is None
                self.names.put(self._bare(decl))  # found by the bindings below (only its id and name are read)
        again = {i for i in touched if i in self.decl_by_id}
        if came_or_went:
            again |= self.unresolved
            for g in gone:
                again |= self.dependents.get(g, set())
        for i in sorted(again - before.keys()):
            before[i] = (self.decl_by_id.get(i), self.sorted.get(i))
        bound: dict[str, Service | None] = {}
        for i in sorted(again | touched):
            if i in self.decl_by_id:
                bound[i] = self._bind(i)
            else:
                bound[i] = None
                self._unbind(i)
        changed: set[str] = set()
        seen: set[str] = set()
        for i, svc in bound.items():
            if svc is not None:
                self.names.put(svc)
            self.sorted.set(i, svc)
            after = (self.decl_by_id.get(i), svc)
            if before[i] != after:
                changed.add(i)
                if _seen_by_forks(*before[i]) != _seen_by_forks(*after):
                    seen.add(i)
        if changed:
            self.services = tuple(self.sorted.values)
        if touched or again:
            self._collect()
        return changed, seen, came_or_went

    def _declaration(self, i: str, diags: Diagnostics) -> ServiceDecl | None:
        """The one declaration service `i` resolves from. A Baseline entry for an imported Kubernetes Service
        amends it; otherwise the first definition (by position) wins and a second is the error."""
        imported: ServiceDecl | None = None
        own: ServiceDecl | None = None
        for d in self.by_id.get(i, ()):
            first = imported if d.source == "Kubernetes" else own
            if first is not None:
                diags.error("MF203", f"service {d.id} is defined twice (first at {first.span.at()})", d.span,
                            "a service comes from one Kubernetes Service or one Baseline entry; remove the other")
            elif d.source == "Kubernetes":
                imported = d
            else:
                own = d
        if own is None:
            return imported
        if imported is not None:
            return _amend(imported, own, diags)
        if own.ports is None:
            diags.error("MF102", f"service {i} has no ports, and no Kubernetes Service {i} is among the inputs to "
                        "amend", own.span, "list its ports, or give the Service's manifest as an input too")
            return None
        return own

    def _bare(self, d: ServiceDecl) -> Service:
        return Service(d.name, d.namespace, d.cluster_domain or self.cluster_domain, d.ports or (), d.endpoints or (),
                       None, d.workloads or (), d.span)

    def _unbind(self, i: str) -> None:
        for t in self.targets.pop(i, ()):
            self.dependents[t].discard(i)
            if not self.dependents[t]:
                del self.dependents[t]
        self.unresolved.discard(i)
        self.bind_noise.pop(i, None)
        self.inferring.pop(i, None)

    def _bind(self, i: str) -> Service:
        self._unbind(i)
        sub, inferred, found = Diagnostics(), _Inferred(), set()
        svc = _bind_deps(self.decl_by_id[i], self._bare(self.decl_by_id[i]), self.names, sub, inferred, found)
        if None in found:
            self.unresolved.add(i)
            found.discard(None)
        self.targets[i] = found
        for t in found:
            self.dependents.setdefault(t, set()).add(i)
        if sub.collected():
            self.bind_noise[i] = sub.collected()
        if inferred.found:
            self.inferring[i] = list(inferred.found)
        return svc

    def _collect(self) -> None:
        out: list = []
        for noise in (self.decl_noise, self.bind_noise):
            for i in sorted(noise):
                out.extend(noise[i])
        inferred = _Inferred()
        for i in sorted(self.inferring):
            for entry in self.inferring[i]:
                inferred.add(*entry, i)
        sub = Diagnostics()
        inferred.report(sub)
        self.diags = out + sub.collected()


def _seen_by_forks(decl: ServiceDecl | None, svc: Service | None) -> tuple | None:
    """What a sandbox's resolution (`_sandbox`) reads of a service: its ports (the positions only where a
    diagnostic names them: ports of undeclared protocol, or every port when none is routable), its
    workloads' kinds, names and labels, and the manifests a workload fork copies. A Baseline edit that
    moves a service's lines changes none of it, so the sandboxes that fork it are not resolved again."""
    if svc is None:
        return None
    every = not svc.routable_ports
    ports = tuple((p.name, p.number, p.protocol, p.cluster_protocol, p.origin if every or p.undeclared else None)
                  for p in svc.ports)
    return (svc.id, ports, tuple((w.kind, w.name, w.labels) for w in svc.workloads),
            decl.manifest if decl is not None else None, decl.workload_manifests if decl is not None else None)


def _span_of(sd: SandboxDecl) -> Span:
    return sd.span


class _SandboxTable:
    """Every sandbox declaration, and what they resolve to, kept from one resolve to the next and
    updated by the declarations that came and went (`update`), so a changed sandbox costs its own
    name and key, not the mesh. The rules are those of a single pass over the declarations sorted by
    position: a name belongs to its first declaration (MF215 for the others); a routing key to the
    first sandbox, by position, that holds its name (MF205 for the others), then to route groups.
    A full resolve is this table filled from empty, so both ways agree by construction."""

    def __init__(self, names: _Names, decl_by_id: dict[str, ServiceDecl]):
        self.names, self.decl_by_id = names, decl_by_id
        self.decls: dict[int, SandboxDecl] = {}  # id -> every declaration
        self.by_name: dict[str, list[SandboxDecl]] = {}  # name -> its declarations, sorted by position
        self.by_key: dict[str, list[SandboxDecl]] = {}  # key -> the name holders claiming it, by position
        self.resolved: dict[int, tuple[Sandbox, list]] = {}  # id of a name holder -> (Sandbox, diagnostics)
        self.conflicts: dict[int, list] = {}  # id -> MF215/MF205 about that declaration
        self.noisy: dict[int, list] = {}  # id -> every diagnostic of that declaration (non-empty only)
        self.sandboxes: SortedMap[Sandbox] = SortedMap()  # the sandboxes (name holders), by name
        self.keys: SortedMap[KeyRoutes] = SortedMap()  # the keys sandboxes route, and their routes
        self.sandbox_by_name: dict[str, Sandbox] = {}  # the sandboxes again, as a dict (route groups)
        self.expiring: dict[str, datetime] = {}  # active sandboxes with an expiry -> when
        self.uses: dict[str, set] = {}  # sandbox -> the service ids its forks found (None: a fork found none)
        self.users: dict[str | None, set[str]] = {}  # the other way round
        self.touched: dict[str, tuple] = {}  # what the last update changed: name -> (Sandbox before, after)
        self._expiry_heap: list[tuple[datetime, str]] = []  # (when, name), soonest first; stale entries skipped
        self.workload: set[str] = set()  # sandboxes with a workload fork
        self.local: set[str] = set()  # sandboxes with a fork to a laptop

    def rebind(self, changed: set[str], came_or_went: bool) -> set[str]:
        """The services `changed` were resolved again (the table's index and declarations are the service
        table's, updated in place): the sandboxes to resolve again, those whose forks found one of them
        (and, when services came or went, those with a fork that found none: it may now, and its
        did-you-mean hint may change). A reference finds the same service as long as that service is
        there: names are DNS labels, ids unique."""
        if came_or_went:
            changed = changed | {None}
        return set().union(*(self.users.get(i, ()) for i in changed))

    def update(self, removed: list[SandboxDecl], added: list[SandboxDecl], now: datetime,
               again: set[str] = frozenset()) -> set[str]:
        """Apply a change; return the routing keys whose sandbox routes may differ. `again`: sandboxes to
        resolve again although their declarations did not change (`rebind`)."""
        names: set[str] = set()
        self.touched = {}
        stale: set[str] = set(again)  # and those expired since the last update: resolve again
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            when, name = heapq.heappop(heap)
            if self.expiring.get(name) == when:
                stale.add(name)
        for sd in removed:
            del self.decls[id(sd)]
            same = self.by_name[sd.name]
            del same[next(i for i, x in enumerate(same) if x is sd)]
            for d in (self.conflicts, self.noisy):
                d.pop(id(sd), None)
            names.add(sd.name)
        for sd in added:
            self.decls[id(sd)] = sd
            bisect.insort(self.by_name.setdefault(sd.name, []), sd, key=_span_of)
            names.add(sd.name)
        keys: set[str] = set()
        for name in sorted(names | stale):
            self._name(name, now, name in stale, keys)
        for key in sorted(keys):
            self._key(key)
        if len(self._expiry_heap) > 2 * len(self.expiring) + 64:  # entries of sandboxes since gone or changed
            self._expiry_heap = [(t, n) for n, t in self.expiring.items()]
            heapq.heapify(self._expiry_heap)
        return keys

    def next_expiry(self) -> datetime | None:
        """When the next active sandbox expires."""
        heap = self._expiry_heap
        while heap and self.expiring.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _name(self, name: str, now: datetime, stale: bool, keys: set[str]) -> None:
        same = self.by_name.get(name) or []
        if not same:
            self.by_name.pop(name, None)
        holder = same[0] if same else None
        old = self.sandbox_by_name.get(name)
        old_decl = next((sd for sd in (self.by_key.get(old.key) or ()) if sd.name == name), None) if old else None
        for sd in same[1:]:
            d = Diagnostics()
            d.error("MF215", f"sandbox {name!r} is defined twice (first at {holder.span.at()})", sd.span,
                    "rename one of them")
            self.conflicts[id(sd)] = d.collected()
            self.resolved.pop(id(sd), None)
            self._noise(sd)
        if old_decl is holder and not stale and holder is not None:
            return
        if old_decl is not None:
            claim = self.by_key[old_decl.key]
            del claim[next(i for i, x in enumerate(claim) if x is old_decl)]
            keys.add(old_decl.key)
            self.resolved.pop(id(old_decl), None)
            if id(old_decl) in self.decls:
                self._noise(old_decl)
        self.expiring.pop(name, None)
        self.workload.discard(name)
        self.local.discard(name)
        for i in self.uses.pop(name, ()):
            self.users[i].discard(name)
        sb = None
        if holder is not None:
            sub = Diagnostics()
            uses: set = set()
            sb = _sandbox(holder, self.names, now, sub, self.decl_by_id, uses)
            self.uses[name] = uses
            for i in uses:
                self.users.setdefault(i, set()).add(name)
            self.resolved[id(holder)] = (sb, sub.collected())
            self.conflicts.pop(id(holder), None)
            bisect.insort(self.by_key.setdefault(holder.key, []), holder, key=_span_of)
            keys.add(holder.key)
            if sb.expires_at is not None and not sb.expired:
                self.expiring[name] = sb.expires_at
                heapq.heappush(self._expiry_heap, (sb.expires_at, name))
            if any(isinstance(f.destination, WorkloadDestination) for f in sb.forks):
                self.workload.add(name)
            if any(isinstance(f.destination, LocalDestination) for f in sb.forks):
                self.local.add(name)
            self._noise(holder)
        self.sandboxes.set(name, sb)
        if sb is None:
            self.sandbox_by_name.pop(name, None)
        else:
            self.sandbox_by_name[name] = sb
        self.touched[name] = (old, sb)

    def _key(self, key: str) -> None:
        claim = self.by_key.get(key) or []
        if not claim:
            self.by_key.pop(key, None)
        for sd in claim[1:]:
            d = Diagnostics()
            d.error("MF205", f"routing key {key!r} of sandbox {sd.name} is already used at "
                    f"{claim[0].key_span.at()}", sd.key_span, "every sandbox and route group needs its own routing key")
            self.conflicts[id(sd)] = d.collected()
            self._noise(sd)
        kr = None
        if claim:
            first = claim[0]
            self.conflicts.pop(id(first), None)
            self._noise(first)
            sb = self.resolved[id(first)][0]
            if not sb.expired and sb.forks:
                kr = self.keys.get(key)
                if kr is None or kr.forks is not sb.forks or kr.owner != sb.name or kr.origin != first.span or \
                        kr.not_before != sb.not_before:
                    kr = KeyRoutes(sb.key, "Sandbox", sb.name, sb.forks, first.span, sb.not_before)
        self.keys.set(key, kr)

    def _noise(self, sd: SandboxDecl) -> None:
        hit = self.resolved.get(id(sd))
        items = (hit[1] if hit else []) + self.conflicts.get(id(sd), [])
        if items:
            self.noisy[id(sd)] = items
        else:
            self.noisy.pop(id(sd), None)

    def claimed(self, key: str) -> Span | None:
        claim = self.by_key.get(key)
        return claim[0].key_span if claim else None


def resolve(decls: Decls, diags: Diagnostics, now: datetime | None = None, memo: Memo | None = None,
            change: tuple[list[SandboxDecl], list[SandboxDecl]] | None = None) -> Model:
    """`change`: the sandbox declarations removed from and added to those `memo` last saw, when the
    caller knows them (it saves comparing every declaration); otherwise they are found by identity."""
    now = now or datetime.now(timezone.utc)
    routing, cluster_domain = _settings(decls, diags)

    table = memo.table if memo is not None else None
    services_changed = settings_changed = True  # unless the memo shows otherwise
    service_ids: frozenset[str] | None = None  # the services that changed, when known
    st = memo.services if memo is not None else None
    if st is not None and memo.settings == (routing, cluster_domain) and table is not None:
        settings_changed = False
    else:
        st, table = _ServiceTable(cluster_domain), None
    again: set[str] = set()  # sandboxes to resolve again because services they found changed
    if not settings_changed and _same(memo.service_decls, decls.services):
        services_changed = False
        service_ids = frozenset()
    else:
        current = dict(zip(map(id, decls.services), decls.services))  # built in C: ~1 ms for 10,000
        removed_services = [st.decls[i] for i in sorted(st.decls.keys() - current.keys())]
        added_services = [current[i] for i in sorted(current.keys() - st.decls.keys())]
        changed_services, seen_by_forks, came_or_went = st.update(removed_services, added_services)
        if table is not None:
            again = table.rebind(seen_by_forks, came_or_went)  # the rest stays as it was
            service_ids = frozenset(changed_services)
            services_changed = bool(changed_services)
        else:
            table = _SandboxTable(st.names, st.decl_by_id)
    if memo is not None:
        if service_ids is None:  # the services were resolved afresh: later stages start from scratch too
            memo.token = None
        memo.service_decls, memo.settings, memo.services = decls.services, (routing, cluster_domain), st
    services, names = st.services, st.names
    diags.extend(st.diags)

    # which sandbox declarations came and went, by identity (a re-read file's are new objects)
    if change is not None and memo is not None and table is memo.table and \
            len(table.decls) - len(change[0]) + len(change[1]) == len(decls.sandboxes):
        removed, added = change
    else:
        current = dict(zip(map(id, decls.sandboxes), decls.sandboxes))  # built in C: ~1 ms for 10,000
        removed = [table.decls[i] for i in table.decls.keys() - current.keys()]
        added = [current[i] for i in current.keys() - table.decls.keys()]
    changed = table.update(removed, added, now, again)
    for items in table.noisy.values():
        diags.extend(items)

    keys = table.keys
    group_keys: dict[str, KeyRoutes] = {}
    previous = memo.groups if memo is not None and memo.table is table else {}
    groups: dict[int, tuple] = {}  # id(declaration) -> (declaration, KeyRoutes | None, diagnostics, fragile)
    if decls.route_groups:
        rg_owner: dict[str, Span] = {}
        for rg in sorted(decls.route_groups, key=lambda r: r.span):
            hit = previous.get(id(rg))
            if hit is not None and hit[0] is rg and not _group_touched(rg, hit[3], table.touched):
                kr, items = hit[1], hit[2]
            else:  # its declaration or one of the sandboxes it selects changed: resolve it again
                sub = Diagnostics()
                kr = _route_group(rg, table.sandbox_by_name, sub)
                items = sub.collected()
                hit = (rg, kr, items, any(d.code == "MF207" for d in items))
            groups[id(rg)] = hit
            diags.extend(items)
            first = table.claimed(rg.key) or rg_owner.get(rg.key)
            if first is not None:
                diags.error("MF205", f"routing key {rg.key!r} of route group {rg.name} is already used at "
                            f"{first.at()}", rg.key_span, "every sandbox and route group needs its own routing key")
                continue
            rg_owner[rg.key] = rg.key_span
            if kr is not None:
                group_keys[rg.key] = kr
        if group_keys:
            keys = keys.copy()
            for k, kr in group_keys.items():
                keys.set(k, kr)

    edge = _edge(decls.edges, names, diags)
    token = object()
    parent = memo.token if memo is not None else None
    if memo is not None:
        before = memo.group_keys if previous else {}
        changed |= {k for k in before.keys() | group_keys.keys() if before.get(k) is not group_keys.get(k)}
        memo.group_keys, memo.groups = group_keys, groups
        memo.token, memo.table = token, table
    edge_changed = memo is None or parent is None or memo.edge != edge
    tunnel = _tunnel(decls.tunnels, table, diags)
    if memo is not None:
        if memo.tunnel != tunnel:  # every fork to a laptop goes to the tunnel: their keys change with it
            changed |= {sb.key for n in table.local if (sb := table.sandbox_by_name.get(n)) is not None}
            changed |= group_keys.keys()
        memo.edge, memo.tunnel = edge, tunnel
    change = Change(token, parent, frozenset(changed), services_changed, settings_changed, edge_changed,
                    service_ids=service_ids if parent is not None else None,
                    workload_sandboxes=frozenset(table.workload), local_sandboxes=frozenset(table.local),
                    group_keys=frozenset(group_keys), next_expiry=table.next_expiry())
    if memo is not None and memo.objects is decls.objects:
        inputs = memo.inputs  # the same declarations (an incremental compile): the same identities
    else:
        inputs = frozenset(decls.objects)
        if memo is not None:
            memo.objects, memo.inputs = decls.objects, inputs
    return Model(routing=routing, services=services, edge=edge, tunnel=tunnel, keys=tuple(keys.values),
                 sandboxes=tuple(table.sandboxes.values), inputs=inputs,
                 user_objects=tuple(sorted(decls.user_objects,
                                           key=lambda o: (o.group, o.kind, o.namespace, o.name, o.origin))),
                 change=change)


def _tunnel(decls: list[TunnelDecl], table: _SandboxTable, diags: Diagnostics) -> Tunnel | None:
    """The one tunnel node of the mesh; without one, every fork to a laptop is an error (MF230)."""
    if decls:
        first, *others = sorted(decls, key=lambda t: t.span)
        for t in others:
            diags.error("MF231", f"a second tunnel is declared (the first at {first.span.at()})", t.span,
                        "the tunnel node is mesh-wide: declare it in one Baseline")
        return Tunnel(first.host, first.port, first.span)
    for name in sorted(table.local):
        sb = table.sandbox_by_name.get(name)
        for f in sb.forks if sb is not None else ():
            if isinstance(f.destination, LocalDestination):
                diags.error("MF230", f"sandbox {sb.name} forks {f.service} to a laptop, but no Baseline declares the "
                            "tunnel node that laptops connect to", f.origin,
                            "add `tunnel: {host: meshforge-tunnel.meshforge, port: 15080}` to the Baseline (where "
                            "sidecars reach `meshforge bootstrap --tunnel`'s listener)")
    return None


def _edge(decls: list[EdgeDecl], names: _Names, diags: Diagnostics) -> Edge | None:
    """The one edge of the mesh: its service bound to an HTTP port, its addresses checked."""
    if not decls:
        return None
    first, *others = sorted(decls, key=lambda e: e.span)
    for e in others:
        diags.error("MF222", f"a second edge is declared (the first at {first.span.at()})", e.span,
                    "the edge is mesh-wide: declare it in one Baseline")
    e = first
    ok = True
    svc = names.find(e.service, e.namespace)
    port = None
    if svc is None:
        ok = False
        diags.error("MF201", f"unknown service {e.service!r} for the edge", e.service_span,
                    names.hint(e.service, e.namespace) or "name the service that outside traffic reaches")
    elif e.port is not None:
        port = next((p for p in svc.ports if p.number == e.port), None)
        if port is None or not port.routable:
            ok = False
            have = ", ".join(f"{p.number}/{p.protocol}" for p in svc.ports)
            diags.error("MF212" if port is None else "MF202",
                        f"port {e.port} of {svc.id} is {'not a port of the service' if port is None else 'not HTTP'} "
                        f"({have})", e.port_span, "name an HTTP port of the service, or leave port out")
            port = None
    else:
        port = next((p for p in svc.routable_ports if not p.undeclared), None) or \
            next(iter(svc.routable_ports), None)
        if port is None:
            ok = False
            protos = ", ".join(f"{p.number}/{p.protocol}" for p in svc.ports)
            diags.error("MF202", f"the edge service {svc.id} has no HTTP port ({protos})", e.service_span,
                        "the edge speaks HTTP: point it at a service with an http-*/grpc-* port or an appProtocol")
    if port is not None and port.undeclared:
        diags.warning("MF219", f"port {port.number} of edge service {svc.id} declares no protocol; the edge "
                      "speaks HTTP to it", port.origin, "name the port http-* or set appProtocol: http")
    if not e.hosts and e.preview_domain is None:
        ok = False
        diags.error("MF102", "the edge has neither hosts nor previewDomain", e.span,
                    "add hosts: [shop.example.com] and/or previewDomain: preview.example.com")
    if e.preview_domain is not None:
        for h, span in e.hosts:
            bare = h.removeprefix("*.")
            if bare == e.preview_domain or bare.endswith("." + e.preview_domain) or \
                    (h.startswith("*.") and e.preview_domain.endswith("." + bare)):
                ok = False
                diags.error("MF223", f"host {h!r} overlaps the preview domain {e.preview_domain!r}", span,
                            "preview hosts are <routing key>.<previewDomain>; give the public hosts another domain")
    sources = []
    for text, span in e.trusted_sources:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as err:
            ok = False
            try:
                hint = f"write {ipaddress.ip_network(text, strict=False)}"
            except ValueError:
                hint = "write a CIDR such as 10.0.0.0/8 or an address such as 192.0.2.7"
            diags.error("MF104", f"trusted source {text!r} is not a CIDR: {err}", span, hint)
            continue
        sources.append(net)
    auth = _preview_auth(e, diags)
    if auth is False:
        ok = False
    if not ok or svc is None or port is None:
        return None

    def qualified(ref: str) -> str:
        return ref if "/" in ref else f"{svc.namespace}/{ref}"

    istio_gateway = qualified(e.istio_gateway or "istio-system/ingressgateway")
    return Edge(svc.id, port.number, tuple(sorted(h for h, _ in e.hosts)), e.preview_domain,
                tuple(str(n) for n in sorted(set(sources), key=lambda n: (n.version, n.network_address, n.prefixlen))),
                istio_gateway, qualified(e.gateway) if e.gateway else istio_gateway, e.span, auth or None)


def _preview_auth(e: EdgeDecl, diags: Diagnostics) -> PreviewAuth | None | bool:
    """The edge's previewAuth: None when off, False when it is wrong (reported)."""
    from .preview import DEFAULT_MAX_TTL, jwks, parse_ttl, public_jwk

    pa = e.preview_auth
    if not pa or pa.get("mode") != "signed":
        return None
    if e.preview_domain is None:
        diags.error("MF232", "previewAuth signs preview links, but the edge has no previewDomain", e.preview_auth_span,
                    "add previewDomain: preview.example.com, or drop previewAuth")
        return False
    keys, bad = [], False
    for i, pem in enumerate(pa.get("publicKeys") or ()):
        try:
            keys.append(public_jwk(pem))
        except ValueError as err:
            bad = True
            diags.error("MF232", f"previewAuth.publicKeys[{i}] is {err}", e.preview_auth_span,
                        "paste the output of `openssl ec -in preview.key -pubout` (-----BEGIN PUBLIC KEY-----)")
    max_ttl = DEFAULT_MAX_TTL
    if pa.get("maxTTL"):
        try:
            max_ttl = parse_ttl(pa["maxTTL"])
        except ValueError as err:
            bad = True
            diags.error("MF104", f"previewAuth.maxTTL: {err}", e.preview_auth_span, "write it like 30d or 12h")
    if not keys and not bad:
        diags.error("MF232", "previewAuth is signed but names no publicKeys", e.preview_auth_span,
                    "add publicKeys: [the output of `openssl ec -in preview.key -pubout`]")
    if bad or not keys:
        return False
    return PreviewAuth(jwks(keys), max_ttl)


def _amend(base: ServiceDecl, amend: ServiceDecl, diags: Diagnostics) -> ServiceDecl:
    """An imported Service with what a Baseline entry for it sets: port protocols (by number),
    dependencies, baseline pod labels, static endpoints."""
    ports = list(base.ports or ())
    for p in amend.ports or ():
        at = next((j for j, q in enumerate(ports) if q.number == p.number), None)
        if at is None:
            diags.error("MF212", f"port {p.number} is not a port of Service {base.id} "
                        f"({', '.join(str(q.number) for q in ports)})", p.origin,
                        f"the Service is defined at {base.span.at()}; amend one of its ports")
            continue
        was = ports[at]
        ports[at] = Port(was.name or p.name, p.number, p.protocol, p.origin,
                         was.protocol if was.protocol != p.protocol else None,
                         was.origin if was.protocol != p.protocol else None)
    return ServiceDecl(
        name=base.name, namespace=base.namespace, ports=tuple(ports),
        endpoints=amend.endpoints if amend.endpoints is not None else base.endpoints,
        workloads=amend.workloads if amend.workloads is not None else base.workloads,
        deps=amend.deps if amend.declares_deps else base.deps,
        declares_deps=amend.declares_deps or base.declares_deps, span=base.span,
        cluster_domain=amend.cluster_domain or base.cluster_domain, source="Kubernetes",
        manifest=base.manifest, workload_manifests=base.workload_manifests,
        inference_partial=() if amend.declares_deps else base.inference_partial)


class _Inferred:
    """What env inference found, said once per env value even when several Services share the workload
    (frontend and frontend-external over one Deployment)."""

    def __init__(self) -> None:
        self.found: dict[tuple, list[str]] = {}

    def add(self, code: str, span: Span, what: str, detail: str, hint: str | None, service: str) -> None:
        self.found.setdefault((code, span, what, detail, hint), []).append(service)

    def report(self, diags: Diagnostics) -> None:
        for (code, span, what, detail, hint), services in self.found.items():
            who = ", ".join(sorted(set(services)))
            if code == "MF213":
                verb = "depends" if len(set(services)) == 1 else "depend"
                diags.note(code, f"{who} {verb} on {what} (inferred from {detail})", span, hint)
            elif code == "MF214":
                diags.warning(code, f"{who}: {detail} names {what!r}, which is not a service among the inputs; "
                              "dependencies left unknown", span, hint)
            else:
                diags.note(code, f"dependencies of {what} unknown: not every call could be read ({detail}); its proxy "
                           "is told about every service", span, hint)


def _mesh_shaped(ref: str, names: _Names) -> bool:
    """Whether an unresolved host could be a service of this mesh (a bare name, name.namespace of a namespace
    the mesh has, name.namespace.svc[.domain]) rather than a host outside it (api.stripe.com)."""
    parts = ref.split(".")
    if len(parts) == 1:
        return True
    namespaces = {s.namespace for s in names.by_id.values()}
    return len(parts) == 2 and parts[1] in namespaces or len(parts) >= 3 and parts[2] == "svc"


def _bind_deps(d: ServiceDecl, svc: Service, names: _Names, diags: Diagnostics, inferred: _Inferred,
               found_ids: set | None = None) -> Service:
    """Declared dependencies (dependsOn, the annotation), or those inferred from env values. Inferred ones are
    known only when every reference inference found could be read and resolved: a reference to a service that
    is not among the inputs, or a ConfigMap or Secret that is not, leave the dependencies unknown (the proxy
    is then told about every service) rather than short of a call; hosts outside the mesh are not calls it
    routes. `found_ids` collects the ids of the services its references found, and None when one found none."""
    if not d.declares_deps and not d.deps and not d.inference_partial:
        return svc
    deps: dict[str, Dependency] = {}
    unknown: list[str] = [] if d.declares_deps else list(d.inference_partial)
    for ref in d.deps:
        found = names.find(ref.ref, ref.namespace)
        target = found.id if found is not None else None
        if found_ids is not None:
            found_ids.add(target)
        if target is None:
            if ref.inferred:
                if _mesh_shaped(ref.ref, names):
                    inferred.add("MF214", ref.span, ref.ref, ref.detail, names.hint(ref.ref, ref.namespace)
                                 or "add the Service to the inputs, or declare the dependencies "
                                    "(meshforge.dev/depends-on)", d.id)
                    unknown.append(f"{ref.detail} names {ref.ref!r}")
            else:
                diags.error("MF201", f"unknown service {ref.ref!r} in the dependencies of {d.id}", ref.span,
                            names.hint(ref.ref, ref.namespace) or "define it in a Baseline or as a Kubernetes Service")
            continue
        if target == d.id:
            continue
        if ref.inferred and target not in deps:
            inferred.add("MF213", ref.span, target, ref.detail,
                         "declare it with the meshforge.dev/depends-on annotation to make it explicit", d.id)
        if target not in deps or (deps[target].inferred and not ref.inferred):
            deps[target] = Dependency(target, ref.inferred, ref.span)
    if unknown:
        inferred.add("MF224", d.span, d.id, "; ".join(unknown),
                     "declare them with the meshforge.dev/depends-on annotation (an empty value for a service "
                     "that calls none) or dependsOn in a Baseline", d.id)
        return svc
    return Service(svc.name, svc.namespace, svc.cluster_domain, svc.ports, svc.endpoints,
                   tuple(deps[k] for k in sorted(deps)), svc.workloads, svc.origin)


def _sandbox(sd: SandboxDecl, names: _Names, now: datetime, diags: Diagnostics,
             decl_by_id: dict[str, ServiceDecl], uses: set | None = None) -> Sandbox:
    """`uses` collects the ids of the services its forks found, and None when one found none (what its
    resolution depends on, beside its own declaration and the clock)."""
    if not valid_routing_key(sd.key):
        diags.error("MF206", f"invalid routing key {sd.key!r}", sd.key_span, ROUTING_KEY_HINT)
    expired = False
    expires_at = None
    if sd.expires_at is not None:
        try:
            expires_at = parse_time(sd.expires_at)
            expired = expires_at <= now
        except ValueError as e:
            diags.error("MF104", f"expiresAt {sd.expires_at!r} is not an RFC 3339 time: {e}", sd.expires_span,
                        'write it like "2026-12-01T00:00:00Z"')
    if expired:
        diags.warning("MF209", f"sandbox {sd.name} expired at {sd.expires_at}; it routes nothing", sd.expires_span,
                      "extend expiresAt or delete the sandbox")
    not_before = _not_before(sd.not_before, sd.not_before_span, diags)
    forks: dict[str, Fork] = {}
    for f in sd.forks:
        svc = names.find(f.ref, sd.namespace)
        if uses is not None:
            uses.add(svc.id if svc is not None else None)
        if svc is None:
            diags.error("MF201", f"unknown service {f.ref!r}", f.ref_span,
                        names.hint(f.ref, sd.namespace) or "fork a service of the baseline")
            continue
        target = svc.id
        if not svc.routable_ports:
            protos = ", ".join(f"{p.number}/{p.protocol} at {p.origin.at()}" for p in svc.ports)
            diags.error("MF202", f"service {target} has no HTTP-family port ({protos}); it cannot be routed per request",
                        f.ref_span, "only HTTP, HTTP/2 and gRPC ports can be forked; name the port http-*/grpc-* "
                        "or set appProtocol if it does speak HTTP (or amend the port's protocol in a Baseline)")
            continue
        for p in svc.routable_ports:
            if p.undeclared:
                diags.warning("MF219", f"port {p.number}{f' ({p.name})' if p.name else ''} of {target} declares no "
                              f"protocol; sandbox {sd.name} forks it, and routing per request applies only if it "
                              "speaks HTTP", p.origin,
                              "name the port http-*/grpc-* or set appProtocol, or amend it in a Baseline entry")
        tcp = [p for p in svc.ports if not p.routable]
        if tcp:
            which = ", ".join(f"{p.number} ({p.name or p.protocol})" for p in tcp)
            diags.warning("MF226", f"sandbox {sd.name} forks {target}, but its port{'s' if len(tcp) > 1 else ''} {which} "
                          f"{'are' if len(tcp) > 1 else 'is'} not HTTP: connections to "
                          f"{'them' if len(tcp) > 1 else 'it'} stay on the baseline whatever key they carry (only "
                          f"{', '.join(str(p.number) for p in svc.routable_ports)} routes per request)", f.ref_span,
                          "routing per request is HTTP's: clients of those ports reach the baseline (or the fork, "
                          "if they call its own host); amend a port's protocol in a Baseline if it does speak HTTP")
        if target in forks:
            diags.error("MF204", f"service {target} is forked twice by sandbox {sd.name}", f.ref_span,
                        f"first fork at {forks[target].origin.at()}; keep one")
            continue
        dest = f.destination
        match dest:
            case SubsetDestination(labels=labels):
                _check_subset(svc, labels, f.span, diags)
            case WorkloadDestination():
                dest = _bind_workload(dest, decl_by_id[target], f.span, diags)
                if dest is None:
                    continue
            case HostDestination() | EndpointsDestination() | LocalDestination():
                pass
            case other:
                assert_never(other)
        forks[target] = Fork(target, sd.name, dest, f.span)
    return Sandbox(sd.name, sd.namespace, sd.key, sd.labels, expires_at, expired,
                   tuple(forks[k] for k in sorted(forks)), sd.span, not_before)


def _not_before(text: str | None, span: Span, diags: Diagnostics) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        diags.error("MF104", f"notBefore {text!r} is not an RFC 3339 time: {e}", span, 'write it like "2026-12-01T00:00:00Z"')
        return None


FORKABLE_WORKLOADS = ("Deployment", "StatefulSet", "Rollout")


def _containers(workload: UserObject) -> list[str]:
    spec = (((workload.body.get("spec") or {}).get("template") or {}).get("spec") or {})
    containers = spec.get("containers") if isinstance(spec, dict) else None
    return [c.get("name") for c in containers or [] if isinstance(c, dict) and isinstance(c.get("name"), str)]


def _bind_workload(dest: WorkloadDestination, decl: ServiceDecl, span: Span,
                   diags: Diagnostics) -> WorkloadDestination | None:
    """The baseline workload to copy: the one Deployment, StatefulSet or Rollout the Service selects, or the
    one `from` names among them; and containers that exist."""
    forkable = [w for w in decl.workload_manifests if w.kind in FORKABLE_WORKLOADS]
    candidates = forkable
    if dest.from_name is not None:
        candidates = [w for w in forkable if w.name == dest.from_name and dest.from_kind in (None, w.kind)]
        if decl.manifest is not None and len(candidates) != 1:
            named = f"{dest.from_kind or 'workload'} {dest.from_name}"
            have = ", ".join(f"{w.kind} {w.name}" for w in forkable) or "none"
            diags.error("MF220", f"service {decl.id}: {named} is not "
                        f"{'one' if not candidates else 'a single one'} of the workloads the Service selects among "
                        f"the inputs ({have})", span,
                        did_you_mean(dest.from_name, [w.name for w in forkable]) or
                        "name one of them in from (and its kind when two kinds share the name)")
            return None
    if decl.manifest is None or len(candidates) != 1:
        found = ", ".join(f"{w.kind} {w.name} ({w.origin.at()})" for w in candidates)
        others = [f"{w.kind} {w.name}" for w in decl.workload_manifests if w.kind not in FORKABLE_WORKLOADS]
        also = f" (it selects {', '.join(others)}, which meshforge does not fork)" if others else ""
        diags.error("MF220", f"service {decl.id}: a workload fork needs exactly one Deployment, StatefulSet or Rollout "
                    f"that the Service selects among the inputs; found {found or 'none'}{also}", span,
                    "fork to a host" if others and not candidates else
                    "give the Service's and its workload's manifests as inputs" if not candidates else
                    f"name the one to copy: to: {{workload: {{from: {{name: {candidates[-1].name}}}, ...}}}}")
        return None
    workload = candidates[0]
    if workload.kind == "Rollout" and not ((workload.body.get("spec") or {}).get("template")):
        ref = ((workload.body.get("spec") or {}).get("workloadRef") or {}).get("name")
        diags.error("MF220", f"service {decl.id}: Rollout {workload.name} takes its pod template from "
                    f"workloadRef{f' {ref}' if ref else ''}, not its own spec", span,
                    f"fork from the workload it refers to: from: {{kind: Deployment, name: {ref or '...'}}}")
        return None
    names = _containers(workload)
    ok = True
    for i, change in enumerate((*dest.images, *dest.env)):
        what = "image" if i < len(dest.images) else f"env {change.name}"
        if change.container is None and len(names) != 1:
            diags.error("MF221", f"{what}: {workload.kind} {workload.name} has {len(names)} containers "
                        f"({', '.join(names)}); say which", span, "add container: NAME")
            ok = False
        elif change.container is not None and change.container not in names:
            diags.error("MF221", f"{what}: {workload.kind} {workload.name} has no container {change.container!r}",
                        span, did_you_mean(change.container, names) or f"containers: {', '.join(names)}")
            ok = False
    return replace(dest, workload=workload, service=decl.manifest) if ok else None


def _check_subset(svc: Service, labels: tuple[tuple[str, str], ...], span: Span, diags: Diagnostics) -> None:
    """The baseline subset must select every baseline workload and no pod of the fork: a label that every
    baseline workload carries with one value, which the fork's pods carry with another."""
    common = svc.common_labels
    if any(k in common and common[k] != v for k, v in labels):
        return
    several = len(svc.workloads) > 1
    workloads = "; ".join(f"{w.kind} {w.name}: {dict(w.labels)}" for w in svc.workloads) if several else \
        str(dict(svc.workloads[0].labels)) if svc.workloads else "unknown"
    diags.error("MF216", f"subset {dict(labels)} of {svc.id} cannot be kept apart from the baseline pods "
                f"(baseline {'workloads' if several else 'pod labels'}: {workloads})", span,
                ("give every baseline workload a common label (e.g. track: stable) that the fork's pods carry with "
                 "another value, " if several else
                 "give the fork's pods a label that the baseline pods carry with another value "
                 "(e.g. version: v1 on baseline, version: pr-42 on the fork), ")
                + "or fork to a host or a workload instead")


def _group_touched(rg: RouteGroupDecl, fragile: bool, touched: dict[str, tuple]) -> bool:
    """Whether a change to the sandboxes `touched` (name -> (before, after)) can change what `rg` resolves
    to: one of its members by name (or any change, when it names an unknown sandbox: the did-you-mean
    hint looks at every name), or a sandbox its labels select, before or after."""
    if not touched:
        return False
    if rg.members is not None:
        return fragile or any(name in touched for name, _ in rg.members)
    want = dict(rg.labels or ())
    return any(sb is not None and all(dict(sb.labels).get(k) == v for k, v in want.items())
               for pair in touched.values() for sb in pair)


def _route_group(rg: RouteGroupDecl, sandboxes: dict[str, Sandbox], diags: Diagnostics) -> KeyRoutes | None:
    if not valid_routing_key(rg.key):
        diags.error("MF206", f"invalid routing key {rg.key!r}", rg.key_span, ROUTING_KEY_HINT)
        return None
    members: list[Sandbox] = []
    if rg.members is not None:
        for name, span in rg.members:
            sb = sandboxes.get(name)
            if sb is None:
                diags.error("MF207", f"route group {rg.name} names unknown sandbox {name!r}", span,
                            did_you_mean(name, sandboxes) or "list sandboxes by metadata.name")
            elif sb.expired:
                diags.error("MF208", f"route group {rg.name} names sandbox {name!r}, which expired at {rfc3339(sb.expires_at)}",
                            span, "remove it from the group, or extend its expiresAt")
            else:
                members.append(sb)
    else:
        want = dict(rg.labels or ())
        for sb in sandboxes.values():
            if all(dict(sb.labels).get(k) == v for k, v in want.items()):
                if sb.expired:
                    diags.note("MF208", f"route group {rg.name} skips expired sandbox {sb.name}", rg.span)
                else:
                    members.append(sb)
        if not members:
            diags.warning("MF211", f"route group {rg.name} selects no sandbox with labels {want}", rg.span,
                          "check the labels in metadata.labels of the sandboxes")
    forks: dict[str, Fork] = {}
    for sb in sorted(members, key=lambda s: s.name):
        for f in sb.forks:
            if f.service in forks:
                other = forks[f.service]
                diags.error("MF204", f"route group {rg.name}: service {f.service} is forked by both sandbox "
                            f"{other.sandbox} and sandbox {sb.name}", rg.span,
                            "a routing key reaches one version of each service; drop one sandbox from the group")
                continue
            forks[f.service] = f
    if not forks:
        return None
    return KeyRoutes(rg.key, "RouteGroup", rg.name, tuple(forks[k] for k in sorted(forks)), rg.span,
                     _not_before(rg.not_before, rg.not_before_span, diags))
