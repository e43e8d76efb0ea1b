"""Istio backend: `Model` → networking.istio.io/v1 VirtualService / DestinationRule / ServiceEntry objects.

Input: the resolved model. Output: `IstioObject`s (plain dicts in a fixed key order) and diagnostics.
One VirtualService per forked service host, with one route per routing key (header exact match OR
baggage member regex) ahead of the default route to the baseline; subsets become DestinationRule
subsets, static endpoints a ServiceEntry. A VirtualService the user already has for a forked host
receives meshforge's routes at the top instead of a second VirtualService (Istio does not merge them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..carriers import baggage_regex
from ..diagnostics import Diagnostics
from ..model import Fork, Model, Port, Service, UserVirtualService, is_ip
from ..output import dump_yaml

API = "networking.istio.io/v1"
MANAGED = {"app.kubernetes.io/managed-by": "meshforge"}
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


@dataclass(frozen=True)
class IstioObject:
    kind: str
    namespace: str
    name: str
    body: dict

    @property
    def path(self) -> str:
        """Where `render -o DIR` writes it."""
        return f"{self.namespace}/{self.kind.lower()}-{self.name}.yaml"

    def sort_key(self) -> tuple:
        return (self.namespace, self.kind, self.name)


def _meta(name: str, namespace: str) -> dict:
    return {"name": name, "namespace": namespace, "labels": dict(MANAGED)}


def _object_name(svc: Service, suffix: str = "") -> str:
    return f"meshforge-{svc.name}{suffix}"[:253]


def endpoints_host(svc: Service, sandbox: str) -> str:
    """The ServiceEntry host standing for a sandbox's static endpoints of `svc`."""
    return f"{sandbox}.{svc.name}.{svc.namespace}.meshforge.internal"



def _subset_names(svc: Service, forks: tuple[tuple[str, Fork], ...]) -> str:
    """Name of the baseline subset: `baseline`, unless a routing key of this service is called that."""
    taken = {f.sandbox for _, f in forks if f.destination.kind == "subset"}
    name, i = "baseline", 0
    while name in taken:
        name, i = f"baseline-{i}", i + 1
    return name


def _baseline_subset_labels(svc: Service, forks: tuple[tuple[str, Fork], ...]) -> dict[str, str]:
    """Baseline pod labels on the keys that tell forks apart (resolve.py guarantees there is one per fork)."""
    base = dict(svc.labels)
    keys = {k for _, f in forks if f.destination.kind == "subset" for k, _ in f.destination.subset_labels}
    return {k: base[k] for k in sorted(keys) if k in base}


def _destination(svc: Service, port: Port, fork: Fork | None, baseline_subset: str | None) -> dict:
    """Subsets and ServiceEntries are named after the sandbox that declared the fork, so a route
    group reaching the same fork shares them."""
    if fork is None:
        d = {"host": svc.fqdn, "port": {"number": port.number}}
        if baseline_subset:
            d["subset"] = baseline_subset
        return d
    dest = fork.destination
    if dest.kind == "host":
        return {"host": dest.host, "port": {"number": dest.port or port.number}}
    if dest.kind == "endpoints":
        return {"host": endpoints_host(svc, fork.sandbox), "port": {"number": port.number}}
    return {"host": svc.fqdn, "port": {"number": port.number}, "subset": fork.sandbox}


def _routes(model: Model, svc: Service, forks: tuple[tuple[str, Fork], ...]) -> list[dict]:
    routing = model.routing
    ports = svc.routable_ports
    multi = len(ports) > 1
    has_subsets = any(f.destination.kind == "subset" for _, f in forks)
    baseline_subset = _subset_names(svc, forks) if has_subsets else None
    routes = []
    for port in ports:
        suffix = f"-{port.number}" if multi else ""
        for key, fork in forks:
            header = {"headers": {routing.header: {"exact": key}}}
            baggage = {"headers": {"baggage": {"regex": baggage_regex(routing.baggage_key, key)}}}
            if multi:
                header["port"] = baggage["port"] = port.number
            routes.append({"name": f"meshforge-{key}{suffix}", "match": [header, baggage],
                           "route": [{"destination": _destination(svc, port, fork, None)}]})
        default: dict = {"name": f"meshforge-baseline{suffix}"}
        if multi:
            default["match"] = [{"port": port.number}]
        default["route"] = [{"destination": _destination(svc, port, None, baseline_subset)}]
        routes.append(default)
    return routes


def _hosts_of(vs: UserVirtualService, svc: Service) -> bool:
    hosts = (vs.body.get("spec") or {}).get("hosts") or []
    names = {svc.fqdn, svc.id, f"{svc.id}.svc"}
    if vs.namespace == svc.namespace:
        names.add(svc.name)
    return any(isinstance(h, str) and h in names for h in hosts)


def _merge(vs: UserVirtualService, ours: list[dict], svc: Service, diags: Diagnostics) -> IstioObject:
    body = copy.deepcopy(vs.body)
    body["apiVersion"] = API
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    for f in SERVER_FIELDS:
        meta.pop(f, None)
    meta.setdefault("namespace", vs.namespace)
    ann = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    meta["annotations"] = {**ann, "meshforge.dev/merged-routes": str(len(ours))}
    spec = body.setdefault("spec", {})
    gateways = spec.get("gateways")
    if gateways is not None and "mesh" not in gateways:
        diags.warning("MF217", f"VirtualService {vs.namespace}/{vs.name} for {svc.fqdn} does not list 'mesh' in "
                      "gateways: sidecars ignore it, so meshforge's routes will not apply to mesh traffic",
                      vs.origin, "add mesh to spec.gateways (sidecars only apply VirtualServices bound to mesh)")
    theirs = [r for r in (spec.get("http") or []) if not str((r or {}).get("name", "")).startswith("meshforge-")]
    if any(r["route"][0]["destination"].get("subset") for r in ours):
        names = {svc.fqdn, svc.id, f"{svc.id}.svc", svc.name}
        loose = [d for r in theirs if isinstance(r, dict) for w in (r.get("route") or []) if isinstance(w, dict)
                 for d in [w.get("destination") or {}] if d.get("host") in names and not d.get("subset")]
        if loose:
            diags.warning("MF216", f"VirtualService {vs.namespace}/{vs.name} routes to {svc.fqdn} without a subset, "
                          "so those requests may reach the pods of label-subset sandboxes", vs.origin,
                          "route the VirtualService's own traffic to a subset of the baseline pods")
    # The user's default routes stay after ours; our own baseline route is dropped: theirs already
    # decides where key-less traffic goes.
    spec["http"] = [r for r in ours if not r["name"].startswith("meshforge-baseline")] + theirs
    return IstioObject("VirtualService", vs.namespace, vs.name, body)


def emit(model: Model, diags: Diagnostics | None = None) -> list[IstioObject]:
    diags = diags if diags is not None else Diagnostics()
    objects: list[IstioObject] = []
    for sid, forks in model.forks_by_service.items():
        svc = model.service_by_id[sid]
        routes = _routes(model, svc, forks)
        user = [vs for vs in model.virtual_services if _hosts_of(vs, svc)]
        if user:
            objects.append(_merge(user[0], routes, svc, diags))
        else:
            objects.append(IstioObject("VirtualService", svc.namespace, _object_name(svc), {
                "apiVersion": API, "kind": "VirtualService", "metadata": _meta(_object_name(svc), svc.namespace),
                "spec": {"hosts": [svc.fqdn], "gateways": ["mesh"], "http": routes}}))
        by_sandbox = {f.sandbox: f for _, f in forks}  # one fork of a service per sandbox
        subset_forks = sorted((n, f) for n, f in by_sandbox.items() if f.destination.kind == "subset")
        if subset_forks:
            baseline = _subset_names(svc, forks)
            subsets = [{"name": baseline, "labels": _baseline_subset_labels(svc, forks)}]
            subsets += [{"name": n, "labels": dict(f.destination.subset_labels)} for n, f in subset_forks]
            objects.append(IstioObject("DestinationRule", svc.namespace, _object_name(svc), {
                "apiVersion": API, "kind": "DestinationRule", "metadata": _meta(_object_name(svc), svc.namespace),
                "spec": {"host": svc.fqdn, "subsets": subsets}}))
        for sandbox, f in sorted(by_sandbox.items()):
            if f.destination.kind != "endpoints":
                continue
            ports = [{"number": p.number, "name": p.name or f"{p.protocol.lower()}-{p.number}",
                      "protocol": p.protocol} for p in svc.routable_ports]
            eps = [{"address": e.address, "ports": {pp["name"]: e.port for pp in ports}} for e in f.destination.endpoints]
            static = all(is_ip(e.address) for e in f.destination.endpoints)
            name = _object_name(svc, f"-{sandbox}")
            objects.append(IstioObject("ServiceEntry", svc.namespace, name, {
                "apiVersion": API, "kind": "ServiceEntry", "metadata": _meta(name, svc.namespace),
                "spec": {"hosts": [endpoints_host(svc, sandbox)], "location": "MESH_INTERNAL", "ports": ports,
                         "resolution": "STATIC" if static else "DNS", "endpoints": eps}}))
    return sorted(objects, key=IstioObject.sort_key)


def to_yaml(body: dict) -> str:
    return dump_yaml(body, sort_keys=False)


def render_files(model: Model, diags: Diagnostics | None = None) -> dict[str, str]:
    """{relative path: YAML text}: what `render --format istio -o DIR` writes."""
    return {o.path: to_yaml(o.body) for o in emit(model, diags)}


def render_stream(model: Model, diags: Diagnostics | None = None) -> str:
    return "---\n".join(to_yaml(o.body) for o in emit(model, diags))
