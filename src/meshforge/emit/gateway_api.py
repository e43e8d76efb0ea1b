"""Gateway API backend: `Model` → gateway.networking.k8s.io/v1 HTTPRoutes and GRPCRoutes for the mesh (GAMMA).

Input: the lowered model (hosts that are Services of the cluster, and static IP endpoints: the capability
check refuses other hosts, DNS endpoints and subsets). Output: `KubeObject`s (plain dicts) and diagnostics.
Per forked Service port, routes attached to the Service (`parentRefs: [{group: "", kind: Service, name,
port}]`): one default route to the baseline Service, and one route per routing key and Service port whose
rule matches the plain header exactly or the `baggage` member by regular expression and sends the request
to the fork's Service. Static endpoints get a Service of their own (no selector) and EndpointSlices, as
Kubernetes names addresses outside the cluster; backendRefs name it. Small routes,
stable names: one per key, well inside the CRD limits (16 rules, 64 matches per rule, 128 per route).

Precedence (Gateway API): among rules attached to one parent, the one whose match has the most
specific path wins, then the most header matches, then the oldest route, then the route name. A key's
rule (path prefix "/", one header match) outranks the default (no header match) on every
implementation; user HTTPRoutes given as input for the same Service are checked (MF306) for rules
that would outrank a key's. gRPC ports get GRPCRoutes (header matches work the same way).

With an edge, routes attached to the edge Gateway (`gateway`) give each key its preview host (a
`RequestHeaderModifier` sets the key and adds the baggage member) and remove the routing header from
callers on the public hosts; like Istio, an HTTPRoute can neither remove one baggage member nor match
the caller's address (MF304, MF305).
"""

from __future__ import annotations

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
from ..names import derived_name
from ..ownership import owner_label
from .objects import KubeObject, Rendered, metadata, warn_cluster_protocols

API = "gateway.networking.k8s.io/v1"
EDGE_NAME = "meshforge.edge"  # the edge's routes: mesh routes are meshforge-<service>.<port>[.<key>]
GROUP = "gateway.networking.k8s.io"


def _kind(port: Port) -> str:
    return "GRPCRoute" if port.protocol == "GRPC" else "HTTPRoute"


def _header_match(name: str, value: str, regex: bool = False) -> dict:
    h = {"type": "RegularExpression" if regex else "Exact", "name": name, "value": value}
    return {"headers": [h]}


def endpoints_service(svc: Service, sandbox: str) -> str:
    """The name of the selector-less Service standing for a sandbox's static endpoints of `svc`."""
    return derived_name(svc.name, sandbox)


def _backend(model: Model, svc: Service, port: Port, fork: Fork | None) -> dict:
    """The backendRef of a key's rule (or of the default rule, `fork` None). The capability check
    (`backends.check`) has refused what cannot be one: hosts outside the cluster, endpoints with DNS names,
    subsets."""
    if fork is None:
        return {"name": svc.name, "port": port.number}
    match fork.destination:
        case HostDestination(host=host, port=host_port):
            ref = model.cluster_service(host, svc.namespace)
            if ref is None:
                raise ValueError(f"{host}: a host outside the cluster reaches the Gateway API backend only past the "
                                 "capability check (backends.check), which refuses it")
            out = {"name": ref[0], "port": host_port or port.number}
            if ref[1] != svc.namespace:
                out["namespace"] = ref[1]
            return out
        case EndpointsDestination():
            return {"name": endpoints_service(svc, fork.sandbox), "port": port.number}
        case SubsetDestination():
            raise ValueError("subsets reach the Gateway API backend only past the capability check")
        case WorkloadDestination():
            raise ValueError("workload forks are lowered to host forks before any backend (lower.workload_forks)")
        case other:
            assert_never(other)


def _endpoints_objects(svc: Service, sandbox: str, dest: EndpointsDestination, origin: Span) -> list[KubeObject]:
    """A sandbox's static endpoints of `svc` as Kubernetes gives static addresses a name: a Service without a
    selector over the routable ports, and an EndpointSlice per address family and endpoint port holding them
    (each service port reaches an endpoint at the endpoint's port, as the Istio backend's ServiceEntry)."""
    name = endpoints_service(svc, sandbox)
    labels = owner_label("Sandbox", sandbox)
    ports = [{"name": p.name or f"port-{p.number}", "port": p.number, "protocol": "TCP",
              **({} if p.undeclared else {"appProtocol": p.protocol.lower()})}  # Istio's protocol names
             for p in svc.routable_ports]
    service = KubeObject("Service", svc.namespace, name, {
        "apiVersion": "v1", "kind": "Service", "metadata": metadata(name, svc.namespace, labels),
        "spec": {"ports": ports}}, origin)
    groups: dict[tuple[str, int], list[str]] = {}
    for e in dest.endpoints:
        family = "IPv6" if ":" in e.address else "IPv4"
        groups.setdefault((family, e.port), []).append(e.address)
    out = [service]
    for i, ((family, target), addresses) in enumerate(sorted(groups.items())):
        slice_name = f"{name}-{i}"
        meta = metadata(slice_name, svc.namespace, {**labels, "kubernetes.io/service-name": name,
                                                    "endpointslice.kubernetes.io/managed-by": "meshforge.dev"})
        out.append(KubeObject("EndpointSlice", svc.namespace, slice_name, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta, "addressType": family,
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in sorted(set(addresses))],
            "ports": [{"name": p["name"], "port": target, "protocol": "TCP"} for p in ports]}, origin))
    return out


def _route(kind: str, name: str, svc: Service, port: Port, rules: list[dict], origin: Span,
           labels: dict | None = None) -> KubeObject:
    return KubeObject(kind, svc.namespace, name, {
        "apiVersion": API, "kind": kind, "metadata": metadata(name, svc.namespace, labels),
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": svc.name, "port": port.number}],
                 "rules": rules}}, origin)


def _name(service: str, *parts: str) -> str:
    """`meshforge-<service>.<port>[.<key>]`: labels hold no dots, so two names never collide."""
    return ".".join((f"meshforge-{service}",) + parts)


def emit(model: Model, diags: Diagnostics, header_only: bool = False) -> list[KubeObject]:
    routing = model.routing
    objects: list[KubeObject] = []
    grants: dict[str, set[tuple[str, str]]] = {}  # target namespace -> {(route kind, route namespace)}
    grant_origin: dict[str, Span] = {}
    owners = {kr.key: kr for kr in model.keys}
    catch_alls = _catch_alls(model)
    for sid, forks in model.forks_by_service.items():
        svc = model.service_by_id[sid]
        for port in svc.routable_ports:
            kind = _kind(port)
            theirs = catch_alls.get((kind, sid, port.number)) or catch_alls.get((kind, sid, None))
            if theirs is None:
                objects.append(_route(kind, _name(svc.name, str(port.number)), svc, port,
                                      [{"backendRefs": [_backend(model, svc, port, None)]}], forks[0][1].origin))
            else:  # the user's route sends key-less requests; a default of ours would tie with it
                obj, rule = theirs
                diags.note("MF310", f"{kind} {obj.namespace}/{obj.name} rule {rule} sends every "
                           f"key-less request for {svc.id}:{port.number}, so meshforge adds no default route there "
                           "(two rules without matches tie, and which one wins is not fixed); the keys' rules "
                           "outrank it", obj.span_of(f"/spec/rules/{rule}"))
            for key, fork in forks:
                backend = _backend(model, svc, port, fork)
                if "namespace" in backend:
                    grants.setdefault(backend["namespace"], set()).add((kind, svc.namespace))
                    grant_origin.setdefault(backend["namespace"], fork.origin)
                matches = [_header_match(routing.header, key)]
                if not header_only:
                    matches.append(_header_match("baggage", baggage_regex(routing.baggage_key, key), regex=True))
                kr = owners[key]
                label = owner_label(kr.owner_kind, kr.owner)
                objects.append(_route(kind, _name(svc.name, str(port.number), key), svc, port,
                                      [{"matches": matches, "backendRefs": [backend]}], fork.origin, label))
        by_sandbox = {f.sandbox: f for _, f in forks}  # a route group reaching a sandbox's fork shares its objects
        for sandbox, f in sorted(by_sandbox.items()):
            if isinstance(f.destination, EndpointsDestination):
                objects.extend(_endpoints_objects(svc, sandbox, f.destination, f.origin))
    for ns, sources in sorted(grants.items()):
        name = "meshforge-routes"
        objects.append(KubeObject("ReferenceGrant", ns, name, {
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": metadata(name, ns),
            "spec": {"from": [{"group": GROUP, "kind": k, "namespace": n} for k, n in sorted(sources)],
                     "to": [{"group": "", "kind": "Service"}]}}, grant_origin[ns]))
    if model.edge is not None:
        objects.extend(_edge(model, model.edge, diags, header_only))
    _check_user_routes(model, diags)
    warn_cluster_protocols(model, diags, "the Gateway API implementation")
    return sorted(objects, key=KubeObject.sort_key)


def _edge(model: Model, edge: Edge, diags: Diagnostics, header_only: bool) -> list[KubeObject]:
    """Routes attached to the edge Gateway (`gateway`: namespace/name)."""
    routing = model.routing
    svc = model.service_by_id[edge.service]
    port = next(p for p in svc.ports if p.number == edge.port)
    gw_ns, gw_name = edge.gateway.split("/", 1)
    parent = {"group": GROUP, "kind": "Gateway", "name": gw_name}
    if gw_ns != svc.namespace:
        parent["namespace"] = gw_ns
    forks = dict(model.forks_by_service.get(svc.id, ()))
    member = [] if header_only else [{"headers": [{"type": "RegularExpression", "name": "baggage",
                                                   "value": any_member_regex(routing.baggage_key)}]}]
    out = []

    def route(name: str, hostnames: list[str], rules: list[dict], labels: dict | None = None) -> KubeObject:
        return KubeObject("HTTPRoute", svc.namespace, name, {
            "apiVersion": API, "kind": "HTTPRoute", "metadata": metadata(name, svc.namespace, labels),
            "spec": {"parentRefs": [dict(parent)], "hostnames": hostnames, "rules": rules}}, edge.origin)

    def modifier(**fields) -> list[dict]:
        return [{"type": "RequestHeaderModifier", "requestHeaderModifier": fields}]

    baseline = {"name": svc.name, "port": port.number}
    if edge.hosts:
        rules = [{"filters": modifier(remove=[routing.header]), "backendRefs": [dict(baseline)]}]
        if member:  # a routing-key member in baggage from outside: the whole header goes (one member cannot)
            rules.insert(0, {"matches": member, "filters": modifier(remove=[routing.header, "baggage"]),
                             "backendRefs": [dict(baseline)]})
        out.append(route(EDGE_NAME, list(edge.hosts), rules))
    if edge.preview_domain and edge.preview_auth is not None:
        diags.warning("MF312", "previewAuth is signed, and the Gateway API has no way to require a token: the preview "
                      f"hosts (<routing key>.{edge.preview_domain}) are left out of this output, so they stay closed",
                      edge.origin, "check the links with your implementation's own policy on the Gateway (Istio: "
                      "--format istio renders a RequestAuthentication and an AuthorizationPolicy; Envoy Gateway: a "
                      "SecurityPolicy with jwt), or use the Envoy edge (meshforge bootstrap --edge)")
    elif edge.preview_domain:
        for kr in model.keys:
            fork = forks.get(kr.key)
            backend = _backend(model, svc, port, fork) if fork is not None else dict(baseline)
            value = f"{routing.baggage_key}={kr.key}"
            rules = [{"filters": modifier(set=[{"name": routing.header, "value": kr.key}],
                                          add=[{"name": "baggage", "value": value}]), "backendRefs": [backend]}]
            if member:
                rules.insert(0, {"matches": member, "filters": modifier(
                    set=[{"name": routing.header, "value": kr.key}, {"name": "baggage", "value": value}]),
                    "backendRefs": [dict(backend)]})
            label = owner_label(kr.owner_kind, kr.owner)
            out.append(route(f"{EDGE_NAME}.preview.{kr.key}", [edge.preview_host(kr.key)], rules, label))
    if header_only:
        diags.warning("MF304", "with header-only matching the Gateway API edge cannot see a routing-key member in "
                      "callers' baggage: it passes unchanged, and reaches sandboxes", edge.origin,
                      "use the Envoy edge (meshforge bootstrap --edge), or an implementation with regular-expression "
                      "header matches")
    else:
        diags.warning("MF304", "the Gateway API edge cannot remove one member of the baggage header: from a request "
                      f"whose baggage carries {routing.baggage_key}=..., it removes the whole baggage header (the "
                      "caller's other members are lost for that request)", edge.origin,
                      "use the Envoy edge (meshforge bootstrap --edge) to keep the other members")
    if edge.trusted_sources:
        diags.warning("MF305", "an HTTPRoute cannot match the caller's address, so the Gateway API edge removes every "
                      "caller's routing key, trusted sources' included", edge.origin,
                      "trusted callers inside the mesh can call the edge service directly, or use the Envoy edge")
    return out


def _precedence(match: dict) -> tuple:
    """Gateway API's order of rule matches (higher wins): exact path, longest prefix, method, headers, queries."""
    path = match.get("path") if isinstance(match.get("path"), dict) else {}
    ptype = path.get("type", "PathPrefix")
    value = path.get("value", "/") if isinstance(path.get("value", "/"), str) else "/"
    headers, queries = match.get("headers"), match.get("queryParams")
    return (ptype == "Exact", len(value) if ptype in ("PathPrefix", "Exact") else 0, "method" in match,
            len(headers) if isinstance(headers, list) else 0, len(queries) if isinstance(queries, list) else 0)


OURS = _precedence({"headers": [{}]})  # a key's rule: path prefix "/", one header match
OURS_GRPC = (False, 0, False, 1, 0)  # GRPCRoute: no method match, one header match


def _catch_alls(model: Model) -> dict[tuple[str, str, int | None], tuple[UserObject, int]]:
    """(kind, service id, port or None for every port) -> a user route's rule that matches every request
    (no matches, or only the path prefix "/"): for those ports the user's route already decides where key-less
    requests go, as meshforge's default route would, and two such rules tie (the oldest route wins, then the
    name: which one is not fixed)."""
    out = {}
    for kind in ("HTTPRoute", "GRPCRoute"):
        for obj in model.user_objects_of(GROUP, kind):
            spec = obj.body.get("spec") if isinstance(obj.body.get("spec"), dict) else {}
            refs, rules = spec.get("parentRefs"), spec.get("rules")
            if not isinstance(refs, list) or not isinstance(rules, list):
                continue
            rule = next((i for i, r in enumerate(rules) if isinstance(r, dict) and _matches_all(r.get("matches"))),
                        None)
            if rule is None:
                continue
            for ref in refs:
                if not isinstance(ref, dict) or ref.get("kind") != "Service" or ref.get("group", "") != "" or \
                        not isinstance(ref.get("name"), str):
                    continue
                svc = model.lookup(f"{ref['name']}.{ref.get('namespace') or obj.namespace}")
                port = ref.get("port") if isinstance(ref.get("port"), int) else None
                if svc is not None:
                    out.setdefault((kind, svc.id, port), (obj, rule))
    return out


def _matches_all(matches) -> bool:
    if not matches:
        return True
    return isinstance(matches, list) and any(
        isinstance(m, dict) and not {k for k in m if k != "path"} and
        (m.get("path") in (None, {}) or m.get("path") == {"type": "PathPrefix", "value": "/"}) for m in matches)


def _check_user_routes(model: Model, diags: Diagnostics) -> None:
    """Warn where an HTTPRoute/GRPCRoute the user gave for a forked Service would take a key's requests."""
    forked = set(model.forks_by_service)
    for kind in ("HTTPRoute", "GRPCRoute"):
        for obj in model.user_objects_of(GROUP, kind):  # as written: any shape, checked before use
            spec = obj.body.get("spec")
            refs, rules = (spec.get("parentRefs", []), spec.get("rules", [])) if isinstance(spec, dict) else (None, None)
            if not isinstance(refs, list) or not isinstance(rules, list):
                diags.warning("MF307", f"{kind} {obj.namespace}/{obj.name}: spec.parentRefs and spec.rules are not "
                              "lists, so whether it takes a routing key's requests was not checked", obj.origin,
                              "fix the route (the API server would reject it as written)")
                continue
            for ref in refs:
                if not isinstance(ref, dict) or ref.get("kind") != "Service" or ref.get("group", "") != "" or \
                        not isinstance(ref.get("name"), str) or not isinstance(ref.get("namespace", ""), str):
                    continue
                svc = model.lookup(f"{ref['name']}.{ref.get('namespace') or obj.namespace}")
                if svc is None or svc.id not in forked:
                    continue
                _check_rules(obj, svc, rules, kind, diags)


def _check_rules(obj: UserObject, svc: Service, rules: list, kind: str, diags: Diagnostics) -> None:
    for i, rule in enumerate(rules):
        matches = rule.get("matches") if isinstance(rule, dict) else None
        for m in matches if isinstance(matches, list) and matches else [{}]:
            if not isinstance(m, dict):
                continue
            headers = m.get("headers")
            prec = _precedence(m) if kind == "HTTPRoute" else \
                (False, 0, "method" in m, len(headers) if isinstance(headers, list) else 0, 0)
            if prec >= (OURS if kind == "HTTPRoute" else OURS_GRPC):
                diags.warning("MF306", f"{kind} {obj.namespace}/{obj.name} rule {i} for {svc.fqdn} is at least as "
                              "specific as meshforge's routing-key rules (path, method or header matches), so requests "
                              "it matches reach its backends whatever routing key they carry",
                              obj.span_of(f"/spec/rules/{i}"),
                              "make the rule less specific, add the routing-key header match to it, or fork the "
                              "service it sends to under the same key")
                break


def render_files(model: Model, diags: Diagnostics, header_only: bool = False) -> list[Rendered]:
    objs = emit(model, diags, header_only)
    if diags.has_errors:
        return []
    return [o.rendered() for o in objs]
