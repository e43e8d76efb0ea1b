"""Istio backend: `Model` → networking.istio.io/v1 VirtualService / DestinationRule / ServiceEntry objects.

Input: the resolved model. Output: `KubeObject`s (plain dicts in a fixed key order) and diagnostics.
One VirtualService per forked service host, with one route per routing key (header exact match OR
baggage member regex) ahead of the default route to the baseline; subsets become DestinationRule
subsets, static endpoints a ServiceEntry. A VirtualService the user already has for a forked host
receives meshforge's routes at the top instead of a second VirtualService (Istio does not merge them).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import assert_never

from ..carriers import any_member_regex, baggage_regex
from ..diagnostics import Diagnostics, Span
from ..model import (
    Edge,
    EndpointsDestination,
    Fork,
    HostDestination,
    Model,
    Port,
    Service,
    SubsetDestination,
    UserObject,
    WorkloadDestination,
)
from ..names import is_ip
from ..ownership import SANDBOX_LABEL, owner_label
from .objects import KubeObject, Rendered, metadata, warn_cluster_protocols

API = "networking.istio.io/v1"
# The edge's VirtualServices: a dot after `meshforge`, where every mesh object's name has a '-' (and names of
# Services and sandboxes hold no dot), so a service called `edge` keeps its own
EDGE_NAME = "meshforge.edge"
GROUP = "networking.istio.io"
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


@dataclass(frozen=True)
class PortRoutes:
    """One port's HTTP routes: one per routing key, and the default route to the baseline."""

    keyed: list[dict]
    default: dict


@dataclass(frozen=True)
class Routes:
    ports: list[PortRoutes]

    def keyed(self) -> list[dict]:
        return [r for p in self.ports for r in p.keyed]

    def all(self) -> list[dict]:
        """Each port's keyed routes ahead of its default."""
        return [r for p in self.ports for r in (*p.keyed, p.default)]


def _object_name(svc: Service, suffix: str = "") -> str:
    return f"meshforge-{svc.name}{suffix}"[:253]


def endpoints_host(svc: Service, sandbox: str) -> str:
    """The ServiceEntry host standing for a sandbox's static endpoints of `svc`."""
    return f"{sandbox}.{svc.name}.{svc.namespace}.meshforge.internal"


def _subset_forks(forks: tuple[tuple[str, Fork], ...]) -> list[tuple[Fork, SubsetDestination]]:
    return [(f, f.destination) for _, f in forks if isinstance(f.destination, SubsetDestination)]


def _baseline_subset_name(forks: tuple[tuple[str, Fork], ...]) -> str:
    """Name of the baseline subset: `baseline`, unless a sandbox forking this service is called that."""
    taken = {f.sandbox for f, _ in _subset_forks(forks)}
    name, i = "baseline", 0
    while name in taken:
        name, i = f"baseline-{i}", i + 1
    return name


def _baseline_subset_labels(svc: Service, forks: tuple[tuple[str, Fork], ...]) -> dict[str, str]:
    """Labels every baseline workload shares, on the keys that tell forks apart (resolve.py guarantees one
    per fork): the subset holds every baseline pod and no fork's."""
    base = svc.common_labels
    keys = {k for _, d in _subset_forks(forks) for k, _ in d.labels}
    return {k: base[k] for k in sorted(keys) if k in base}


def istio_host(model: Model, svc: Service, host: str) -> tuple[str, bool]:
    """(the host a VirtualService destination names for a host fork, whether it is a Kubernetes Service).
    Istio reads a dotted host literally (`name.ns` is not the Service `name` in `ns`, it is an unknown host:
    no cluster, 503), so a cluster Service is named by its full name; a host outside the cluster is known
    to Istio only through a ServiceEntry (`_external_entry`)."""
    cluster = model.cluster_service(host, svc.namespace)
    if cluster is None:
        return host.rstrip("."), False
    return f"{cluster[0]}.{cluster[1]}.svc.{svc.cluster_domain}", True


def _destination(model: Model, svc: Service, port: Port, fork: Fork) -> dict:
    """Subsets and ServiceEntries are named after the sandbox that declared the fork, so a route
    group reaching the same fork shares them."""
    match fork.destination:
        case HostDestination(host=host, port=host_port):
            return {"host": istio_host(model, svc, host)[0], "port": {"number": host_port or port.number}}
        case EndpointsDestination():
            return {"host": endpoints_host(svc, fork.sandbox), "port": {"number": port.number}}
        case SubsetDestination():
            return {"host": svc.fqdn, "port": {"number": port.number}, "subset": fork.sandbox}
        case WorkloadDestination():
            raise ValueError("workload forks are lowered to host forks before any backend (lower.workload_forks)")
        case other:
            assert_never(other)


def _routes(model: Model, svc: Service, forks: tuple[tuple[str, Fork], ...]) -> Routes:
    routing = model.routing
    ports = svc.routable_ports
    multi = len(ports) > 1
    baseline_subset = _baseline_subset_name(forks) if _subset_forks(forks) else None
    out = []
    for port in ports:
        suffix = f"-{port.number}" if multi else ""
        keyed = []
        for key, fork in forks:
            header = {"headers": {routing.header: {"exact": key}}}
            baggage = {"headers": {"baggage": {"regex": baggage_regex(routing.baggage_key, key)}}}
            if multi:
                header["port"] = baggage["port"] = port.number
            keyed.append({"name": f"meshforge-{key}{suffix}", "match": [header, baggage],
                          "route": [{"destination": _destination(model, svc, port, fork)}]})
        route: dict = {"name": f"meshforge-baseline{suffix}"}
        if multi:
            route["match"] = [{"port": port.number}]
        base = {"host": svc.fqdn, "port": {"number": port.number}}
        if baseline_subset:
            base["subset"] = baseline_subset
        route["route"] = [{"destination": base}]
        out.append(PortRoutes(keyed, route))
    return Routes(out)


def _hosts(vs: dict) -> list:
    spec = vs.get("spec")
    hosts = spec.get("hosts") if isinstance(spec, dict) else None
    return hosts if isinstance(hosts, list) else []


def _by_service(model: Model) -> dict[str, list[UserObject]]:
    """service id -> the user's VirtualServices whose hosts name it (from their own namespace), in order;
    each VirtualService parsed once."""
    out: dict[str, list[UserObject]] = {}
    for vs in model.user_objects_of(GROUP, "VirtualService"):
        for sid in dict.fromkeys(svc.id for h in _hosts(vs.body) if isinstance(h, str)
                                 for svc in [model.lookup(h, vs.namespace)] if svc is not None):
            out.setdefault(sid, []).append(vs)
    return out


IGNORE_ANNOTATION = "meshforge.dev/ignore"
MERGED_ANNOTATION = "meshforge.dev/merged-routes"


def _as_written(vs: UserObject, body: dict) -> dict:
    """A user's object as meshforge outputs it: as written (its API version, labels and annotations), less
    the fields the cluster owns. It is never labelled managed-by meshforge: a prune by that label must not
    delete it, and no tool should take it for meshforge's."""
    body.pop("status", None)
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        meta = body["metadata"] = {}
    for f in SERVER_FIELDS:
        meta.pop(f, None)
    meta.setdefault("namespace", vs.namespace)
    return body


def _left_alone(model: Model) -> dict[UserObject, str]:
    """The user's VirtualServices meshforge must not touch, and why: marked `meshforge.dev/ignore: "true"`, or
    named by an Argo Rollout that manages its weights (writing it back would reset them on every apply)."""
    managed: dict[tuple[str, str], str] = {}
    for ro in model.user_objects_of("argoproj.io", "Rollout"):
        routing = (((ro.body.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("trafficRouting") or {}
        istio = routing.get("istio") if isinstance(routing, dict) else None
        refs = []
        if isinstance(istio, dict):
            refs = [istio.get("virtualService")] + list(istio.get("virtualServices") or [])
        for ref in refs:
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                name, _, ns = ref["name"].partition(".")
                managed[(ns or ro.namespace, name)] = f"its weights are managed by Argo Rollout {ro.namespace}/{ro.name}"
    out = {}
    for vs in model.user_objects_of(GROUP, "VirtualService"):
        ann = (vs.body.get("metadata") or {}).get("annotations") or {}
        if isinstance(ann, dict) and str(ann.get(IGNORE_ANNOTATION, "")).lower() == "true":
            out[vs] = f"it is marked {IGNORE_ANNOTATION}: \"true\""
        elif (vs.namespace, vs.name) in managed:
            out[vs] = managed[(vs.namespace, vs.name)]
    return out


def _merge(vs: UserObject, body: dict, ours: Routes, svc: Service, diags: Diagnostics) -> KubeObject:
    """The user's VirtualService with meshforge's keyed routes first. Their own routes, the defaults
    included, stay after ours: theirs already decide where key-less traffic goes, so our default
    routes are not added."""
    body = _as_written(vs, body)
    meta = body["metadata"]
    ann = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    meta["annotations"] = {**ann, MERGED_ANNOTATION: str(len(ours.keyed()))}
    spec = body.setdefault("spec", {})
    gateways = spec.get("gateways")
    if gateways is not None and "mesh" not in gateways:
        diags.warning("MF217", f"VirtualService {vs.namespace}/{vs.name} for {svc.fqdn} does not list 'mesh' in "
                      "gateways: sidecars ignore it, so meshforge's routes will not apply to mesh traffic",
                      vs.origin, "add mesh to spec.gateways (sidecars only apply VirtualServices bound to mesh)")
    theirs = [r for r in (spec.get("http") or []) if not str((r or {}).get("name", "")).startswith("meshforge-")]
    if any("subset" in p.default["route"][0]["destination"] for p in ours.ports):
        names = set(svc.names(vs.namespace))
        loose = [d for r in theirs if isinstance(r, dict) for w in (r.get("route") or []) if isinstance(w, dict)
                 for d in [w.get("destination") or {}] if d.get("host") in names and not d.get("subset")]
        if loose:
            diags.warning("MF302", f"VirtualService {vs.namespace}/{vs.name} routes to {svc.fqdn} without a subset, "
                          "so those requests may reach the pods of label-subset sandboxes", vs.origin,
                          "route the VirtualService's own traffic to a subset of the baseline pods")
    spec["http"] = ours.keyed() + theirs
    return KubeObject("VirtualService", vs.namespace, vs.name, body, vs.origin, is_input=True)


def _virtual_service(svc: Service, user: list[UserObject], routes: Routes, diags: Diagnostics,
                     merged: dict[UserObject, str], origin: Span, alone: dict[UserObject, str]) -> KubeObject | None:
    if user and user[0] in alone:
        diags.warning("MF227", f"VirtualService {user[0].namespace}/{user[0].name} for {svc.fqdn} is left alone "
                      f"({alone[user[0]]}): meshforge adds no routes to it, and a second VirtualService for the "
                      "host would not be merged by Istio, so keyed requests to it reach no sandbox", user[0].origin,
                      "fork a service whose VirtualService meshforge may merge into, or remove the annotation")
        return None
    if user and user[0] in merged:
        diags.warning("MF303", f"VirtualService {user[0].namespace}/{user[0].name} covers {merged[user[0]]} and "
                      f"{svc.fqdn}, both forked; meshforge merges routes for {merged[user[0]]} only",
                      user[0].origin, "give each forked host its own VirtualService")
        return None
    if not user:
        name = _object_name(svc)
        return KubeObject("VirtualService", svc.namespace, name, {
            "apiVersion": API, "kind": "VirtualService", "metadata": metadata(name, svc.namespace),
            "spec": {"hosts": [svc.fqdn], "gateways": ["mesh"], "http": routes.all()}}, origin)
    for extra in user[1:]:
        diags.warning("MF303", f"VirtualService {extra.namespace}/{extra.name} is a second VirtualService for "
                      f"{svc.fqdn}; meshforge merges its routes into {user[0].namespace}/{user[0].name} only",
                      extra.origin, "Istio applies one VirtualService per host on sidecars: merge the two into one")
    merged[user[0]] = svc.fqdn
    return _merge(user[0], user[0].body, routes, svc, diags)


def emit(model: Model, diags: Diagnostics | None = None) -> list[KubeObject]:
    diags = diags if diags is not None else Diagnostics()
    objects: list[KubeObject] = []
    merged: dict[UserObject, str] = {}
    user_vs = _by_service(model)
    alone = _left_alone(model)
    for sid, forks in model.forks_by_service.items():
        svc = model.service_by_id[sid]
        origin = forks[0][1].origin
        vs = _virtual_service(svc, user_vs.get(sid, []), _routes(model, svc, forks), diags, merged, origin, alone)
        if vs is not None:
            objects.append(vs)
        by_sandbox = {f.sandbox: f for _, f in forks}  # one fork of a service per sandbox
        subset_forks = sorted((f.sandbox, d) for f, d in _subset_forks(tuple(by_sandbox.items())))
        if subset_forks:
            subsets = [{"name": _baseline_subset_name(forks), "labels": _baseline_subset_labels(svc, forks)}]
            subsets += [{"name": n, "labels": dict(d.labels)} for n, d in subset_forks]
            objects.append(KubeObject("DestinationRule", svc.namespace, _object_name(svc), {
                "apiVersion": API, "kind": "DestinationRule", "metadata": metadata(_object_name(svc), svc.namespace),
                "spec": {"host": svc.fqdn, "subsets": subsets}}, origin))
        for sandbox, f in sorted(by_sandbox.items()):
            if isinstance(f.destination, EndpointsDestination):
                objects.append(_service_entry(svc, sandbox, f.destination, f.origin))
            elif isinstance(f.destination, HostDestination) and not istio_host(model, svc, f.destination.host)[1]:
                objects.append(_external_entry(model, svc, sandbox, f.destination, f.origin))
    if model.edge is not None:
        objects.extend(_edge(model, model.edge, diags))
    warn_cluster_protocols(model, diags, "Istio")
    _check_gateway_routes(model, diags, merged)
    # A user's VirtualService is in the output as written when no fork touches its host (never claimed:
    # no ownership label, its own API version): when the last sandbox of a host goes, applying the output
    # restores the user's own routes. One meshforge must leave alone is not in the output at all.
    for vs in model.user_objects_of(GROUP, "VirtualService"):
        if vs not in merged and vs not in alone:
            objects.append(KubeObject("VirtualService", vs.namespace, vs.name, _as_written(vs, vs.body), vs.origin,
                                      is_input=True))
    return sorted(objects, key=KubeObject.sort_key)


def _edge(model: Model, edge: Edge, diags: Diagnostics) -> list[KubeObject]:
    """VirtualServices bound to the edge Gateway: the public hosts go to the baseline with the caller's
    routing header removed; each preview host sets its key and goes to the key's version of the edge
    service; other preview hosts get a 404. Nodes behind the edge route by the key as usual."""
    routing = model.routing
    svc = model.service_by_id[edge.service]
    port = next(p for p in svc.ports if p.number == edge.port)
    forks = model.forks_by_service.get(svc.id, ())
    routes = _routes(model, svc, forks).ports[svc.routable_ports.index(port)]
    baseline = routes.default["route"]  # copied into each route below: YAML must not alias shared lists
    fork_of = dict(forks)
    member = {"baggage": {"regex": any_member_regex(routing.baggage_key)}}
    ns = svc.namespace
    out = []
    diags.warning("MF304", "the Istio edge cannot remove one member of the baggage header: from a request whose "
                  f"baggage carries {routing.baggage_key}=..., it removes the whole baggage header (the caller's "
                  "other members are lost for that request); requests without it keep their baggage", edge.origin,
                  "use the Envoy edge (meshforge bootstrap --edge) to keep the other members")
    if edge.trusted_sources:
        diags.warning("MF305", "an Istio VirtualService cannot match the caller's address, so the Istio edge "
                      "removes every caller's routing key, trusted sources' included", edge.origin,
                      "trusted callers inside the mesh can call the edge service directly (its sidecar honours "
                      "their key), or use the Envoy edge")

    def vs(name: str, hosts: list[str], http: list[dict], labels: dict | None = None) -> KubeObject:
        meta = metadata(name, ns)
        meta["labels"].update(labels or {})
        return KubeObject("VirtualService", ns, name, {
            "apiVersion": API, "kind": "VirtualService", "metadata": meta,
            "spec": {"hosts": hosts, "gateways": [edge.istio_gateway], "http": http}}, edge.origin)

    if edge.hosts:
        out.append(vs(EDGE_NAME, list(edge.hosts), [
            {"name": "meshforge-edge-outside-baggage-key", "match": [{"headers": member}],
             "headers": {"request": {"remove": [routing.header, "baggage"]}}, "route": deepcopy(baseline)},
            {"name": "meshforge-edge", "headers": {"request": {"remove": [routing.header]}},
             "route": deepcopy(baseline)}]))
    if edge.preview_domain:
        for kr in model.keys:
            fork = fork_of.get(kr.key)
            dest = [{"destination": _destination(model, svc, port, fork)}] if fork is not None else baseline
            value = f"{routing.baggage_key}={kr.key}"
            label = owner_label(kr.owner_kind, kr.owner)
            out.append(vs(f"{EDGE_NAME}.preview.{kr.key}", [edge.preview_host(kr.key)], [
                {"name": f"meshforge-preview-{kr.key}-replace-baggage-key", "match": [{"headers": member}],
                 "headers": {"request": {"set": {routing.header: kr.key, "baggage": value}}}, "route": deepcopy(dest)},
                {"name": f"meshforge-preview-{kr.key}",
                 "headers": {"request": {"set": {routing.header: kr.key}, "add": {"baggage": value}}},
                 "route": deepcopy(dest)}], label))
        out.append(vs(f"{EDGE_NAME}.unknown-preview", [f"*.{edge.preview_domain}"], [
            {"name": "meshforge-unknown-preview-host", "directResponse": {"status": 404, "body": {"string": (
                "meshforge: no active sandbox or route group has the routing key this host names "
                f"(<routing key>.{edge.preview_domain}); it may have expired or been deleted\n")}}}]))
        if edge.preview_auth is not None:
            out.extend(_preview_auth(model, edge, diags))
    return out


SECURITY_API = "security.istio.io/v1"


def _preview_auth(model: Model, edge: Edge, diags: Diagnostics) -> list[KubeObject]:
    """previewAuth on the Istio ingress gateway (the pods labelled istio=<the Gateway's name>): a
    RequestAuthentication that checks the links' tokens (header, link parameter or cookie), and a DENY
    AuthorizationPolicy: a preview host without a valid token, or with one whose audience is not its key."""
    from ..preview import COOKIE, ISSUER, TOKEN_PARAM, audience

    ns, gw = edge.istio_gateway.split("/", 1)
    selector = {"matchLabels": {"istio": gw}}
    diags.warning("MF313", "the Istio edge checks a preview link's signature, expiry and key, but not previewAuth.maxTTL "
                  "nor a key's notBefore (an AuthorizationPolicy cannot compare times), and cannot turn a link into a "
                  "cookie (a VirtualService cannot copy a query parameter into Set-Cookie): a browser needs the "
                  "token on every request there", edge.origin,
                  "revoke links by rotating previewAuth.publicKeys; for browsers and notBefore, use the Envoy edge "
                  "(meshforge bootstrap --edge)")
    auth = KubeObject("RequestAuthentication", ns, "meshforge-preview", {
        "apiVersion": SECURITY_API, "kind": "RequestAuthentication", "metadata": metadata("meshforge-preview", ns),
        "spec": {"selector": selector, "jwtRules": [{
            "issuer": ISSUER, "jwks": edge.preview_auth.jwks,
            "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
            "fromParams": [TOKEN_PARAM], "fromCookies": [COOKIE], "forwardOriginalToken": True}]}}, edge.origin)
    domain = edge.preview_domain

    def hosts(h: str) -> list[str]:
        return [h, f"{h}:*"]

    rules = [{"from": [{"source": {"notRequestPrincipals": ["*"]}}], "to": [{"operation": {"hosts": hosts(f"*.{domain}")}}]}]
    for kr in model.keys:
        rules.append({"to": [{"operation": {"hosts": hosts(edge.preview_host(kr.key))}}],
                      "when": [{"key": "request.auth.audiences", "notValues": [audience(kr.key)]}]})
    deny = KubeObject("AuthorizationPolicy", ns, "meshforge-preview", {
        "apiVersion": SECURITY_API, "kind": "AuthorizationPolicy", "metadata": metadata("meshforge-preview", ns),
        "spec": {"selector": selector, "action": "DENY", "rules": rules}}, edge.origin)
    return [auth, deny]


def _check_gateway_routes(model: Model, diags: Diagnostics, merged: dict[UserObject, str]) -> None:
    """A user's VirtualService bound to a gateway decides there: sending to a forked service (through `hosts:
    ["*"]`, say), keyed requests entering there reach its baseline (MF228); bound to the edge's gateway for
    hosts the edge serves, Istio merges it with meshforge's edge VirtualServices in an order it does not
    promise (MF229)."""
    edge = model.edge
    for vs in model.user_objects_of(GROUP, "VirtualService"):
        spec = vs.body.get("spec") if isinstance(vs.body.get("spec"), dict) else {}
        gateways = [g for g in spec.get("gateways") or [] if isinstance(g, str) and g != "mesh"]
        if not gateways or vs in merged:
            continue
        forked = sorted({svc.id for r in spec.get("http") or [] if isinstance(r, dict)
                         for w in r.get("route") or [] if isinstance(w, dict)
                         for d in [w.get("destination") or {}] if isinstance(d, dict) and isinstance(d.get("host"), str)
                         for svc in [model.lookup(d["host"], vs.namespace)]
                         if svc is not None and svc.id in model.forks_by_service})
        if forked:
            diags.warning("MF228", f"VirtualService {vs.namespace}/{vs.name}, bound to gateway "
                          f"{', '.join(gateways)}, sends to {', '.join(forked)}, forked under routing keys: at the "
                          "gateway its own routes decide, so keyed requests entering there reach the baseline of "
                          f"{'those services' if len(forked) > 1 else 'that service'}", vs.origin,
                          "let outside traffic enter through meshforge's edge (a Baseline's spec.edge), or add the "
                          "keys' header matches to its routes")
        if edge is None:
            continue
        qualified = {g if "/" in g else f"{vs.namespace}/{g}" for g in gateways}
        hosts = [h for h in spec.get("hosts") or [] if isinstance(h, str)]
        ours = list(edge.hosts) + ([f"*.{edge.preview_domain}"] if edge.preview_domain else [])
        shared = sorted({h for h in hosts for o in ours if h == o or h == "*" or
                         h.startswith("*.") and o.endswith(h[1:]) or o.startswith("*.") and h.endswith(o[1:])})
        if edge.istio_gateway in qualified and shared:
            diags.warning("MF229", f"VirtualService {vs.namespace}/{vs.name} is bound to the edge's gateway "
                          f"{edge.istio_gateway} for {', '.join(shared)}, as meshforge's edge VirtualServices are: "
                          "Istio merges the VirtualServices of one gateway host in an order it does not promise, so "
                          "its rules and the edge's may replace each other", vs.origin,
                          "leave the edge's hosts to meshforge (move its rules to the edge service's own "
                          "VirtualService, bound to mesh), or give the edge hosts of its own")


def _service_entry(svc: Service, sandbox: str, dest: EndpointsDestination, origin: Span) -> KubeObject:
    ports = [{"number": p.number, "name": p.name or f"{p.protocol.lower()}-{p.number}",
              **({} if p.undeclared else {"protocol": p.protocol})} for p in svc.routable_ports]
    eps = [{"address": e.address, "ports": {pp["name"]: e.port for pp in ports}} for e in dest.endpoints]
    static = all(is_ip(e.address) for e in dest.endpoints)
    name = _object_name(svc, f".{sandbox}")  # a dot: no Service or sandbox name holds one, so none collide
    meta = metadata(name, svc.namespace)
    meta["labels"][SANDBOX_LABEL] = sandbox  # exists because of this sandbox: goes with it
    return KubeObject("ServiceEntry", svc.namespace, name, {
        "apiVersion": API, "kind": "ServiceEntry", "metadata": meta,
        "spec": {"hosts": [endpoints_host(svc, sandbox)], "location": "MESH_INTERNAL", "ports": ports,
                 "resolution": "STATIC" if static else "DNS", "endpoints": eps}}, origin)


def _external_entry(model: Model, svc: Service, sandbox: str, dest: HostDestination, origin: Span) -> KubeObject:
    """A host fork outside the cluster (`b.example.com`), made known to Istio: without a ServiceEntry Istio
    builds no cluster for the host and the keyed route answers 503. Resolved by DNS, as the xDS backend does."""
    ports = {}
    for p in svc.routable_ports:
        number = dest.port or p.number
        ports.setdefault(number, {"number": number, "name": f"{p.protocol.lower()}-{number}",
                                  **({} if p.undeclared else {"protocol": p.protocol})})
    name = _object_name(svc, f".{sandbox}")
    meta = metadata(name, svc.namespace)
    meta["labels"][SANDBOX_LABEL] = sandbox
    return KubeObject("ServiceEntry", svc.namespace, name, {
        "apiVersion": API, "kind": "ServiceEntry", "metadata": meta,
        "spec": {"hosts": [istio_host(model, svc, dest.host)[0]], "location": "MESH_EXTERNAL",
                 "ports": [ports[n] for n in sorted(ports)], "resolution": "DNS"}}, origin)


def render_files(model: Model, diags: Diagnostics) -> list[Rendered]:
    """What `render --format istio -o DIR` writes, one file per object."""
    return [o.rendered() for o in emit(model, diags)]
