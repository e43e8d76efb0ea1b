"""Istio's own translation as the judge: a meshforge model → the cluster an Istio mesh would run it in (Services,
Pods, EndpointSlices), meshforge's rendered objects → Istio's pilot (conformance/istio/translate) → a real Envoy
→ real requests. Which cluster answered is Istio's decision: every cluster of the translated bootstrap is given
one local backend that answers with the cluster's name (the one test-side change; Istio's routes, matches and
clusters are as Istio built them)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import yaml

from meshforge import backends
from meshforge.diagnostics import Diagnostics
from meshforge.envoyproc import Envoy, free_port
from meshforge.model import HostDestination, Model, SubsetDestination
from meshforge.pipeline import compile_paths
from meshforge.sampleapp import SampleApp, http_get

from .conftest import NOW
from .gateway_eval import backends as gateway_backends
from .golden import GOLDEN, cases, chdir, extra_inputs, namespace
from .istio_eval import NO_CLUSTER, NO_ROUTE, route
from .istio_schema import GATEWAY_CRDS, gateway_validators, with_defaults

TRANSLATE = Path(__file__).resolve().parents[1] / "conformance" / "istio" / "translate"
APP_PROTOCOL = {"HTTP": "http", "HTTP2": "http2", "GRPC": "grpc", "GRPC-WEB": "grpc-web", "TCP": "tcp", "TLS": "tls",
                "HTTPS": "https"}


def build() -> None:
    r = subprocess.run([sys.executable, str(TRANSLATE), "--build-only"], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr


def cluster_objects(model: Model, generated: list[dict]) -> list[dict]:
    """What a cluster running the model holds: a Service per model service (its ports, the protocol meshforge
    routes by as appProtocol), a Pod per workload (its labels: what DestinationRule subsets select) and per
    label subset a fork names, EndpointSlices tying them together; the fork Services meshforge generated; and
    a Service for every host fork to a cluster Service (`name`, `name.ns`, `name.ns.svc...`) the inputs do not define (in a
    cluster the fork's own Service)."""
    out: list[dict] = []
    namespaces = {s.namespace for s in model.services}
    ip = iter(f"10.{i // 250}.{i % 250}.{j}" for i in range(1, 10_000) for j in range(1, 2))
    vip = iter(f"10.96.{i // 250}.{i % 250 + 1}" for i in range(10_000))
    known = {(s.namespace, s.name) for s in model.services}
    subsets: dict[str, list[dict]] = {}
    for kr in model.keys:
        for f in kr.forks:
            if isinstance(f.destination, SubsetDestination):
                subsets.setdefault(f.service, []).append(dict(f.destination.labels))
    for svc in model.services:
        ports = [{"name": p.name or f"port-{p.number}", "port": p.number, "targetPort": p.number + 10_000,
                  **({"appProtocol": APP_PROTOCOL[p.protocol]} if p.protocol in APP_PROTOCOL else {})}
                 for p in svc.ports]
        select = {"mf-test-service": svc.name}
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc.name, "namespace": svc.namespace},
                    "spec": {"clusterIP": next(vip), "selector": select, "ports": ports}})
        labels = [dict(w.labels) for w in svc.workloads] or [{"app": svc.name}]
        labels += [{**labels[0], **s} for s in subsets.get(svc.id, [])]
        endpoints = []
        for i, lab in enumerate(labels):
            name, address = f"{svc.name}-{i}", next(ip)
            out.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": svc.namespace, "labels": {**lab, **select}},
                        "spec": {"containers": [{"name": "app", "image": "app"}]},
                        "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
                                   "conditions": [{"type": "Ready", "status": "True"}]}})
            endpoints.append({"addresses": [address], "conditions": {"ready": True},
                              "targetRef": {"kind": "Pod", "name": name, "namespace": svc.namespace}})
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": svc.name, "namespace": svc.namespace,
                                 "labels": {"kubernetes.io/service-name": svc.name}},
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": "TCP"} for p in ports]})
    for obj in generated:
        if obj.get("kind") == "Service":
            meta = obj["metadata"]
            known.add((meta["namespace"], meta["name"]))
            out.append({**obj, "spec": {**obj["spec"], "clusterIP": next(vip)}})
    for kr in model.keys:
        for f in kr.forks:
            d = f.destination
            if not isinstance(d, HostDestination):
                continue
            svc = model.service_by_id[f.service]
            named = model.cluster_service(d.host, svc.namespace)
            if named is not None and (named[1], named[0]) not in known:
                known.add((named[1], named[0]))
                namespaces.add(named[1])
                out.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": named[0], "namespace": named[1]},
                            "spec": {"clusterIP": next(vip), "selector": {"mf-test-service": named[0]},
                                     "ports": [{"name": p.name or f"port-{p.number}", "port": d.port or p.number,
                                                **({"appProtocol": APP_PROTOCOL[p.protocol]}
                                                   if p.protocol in APP_PROTOCOL else {})}
                                               for p in svc.ports]}})
    out[:0] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in sorted(namespaces)]
    return out


def translate(tmp: Path, objects: list[dict], proxy: str, ports: dict[str, int], admin: int,
              crds: list[Path] = ()) -> dict:
    """Istio's Envoy configuration for `proxy`, with a listener on 127.0.0.1:ports[t] for each target t
    (`name.namespace:port`: Istio's outbound routing for that service port). `crds`: CRD files installed in
    the cluster (the Gateway API's: Istio reads their bundle version)."""
    f = tmp / f"inputs-{len(list(tmp.glob('inputs-*')))}.yaml"
    f.write_text("\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects))
    out = tmp / (f.stem + ".bootstrap.json")
    args = [sys.executable, str(TRANSLATE), "--proxy", proxy, "--admin-port", str(admin), "--output", str(out)]
    for p, local in ports.items():
        args += ["--port", f"{p}=127.0.0.1:{local}"]
    r = subprocess.run([*args, str(f), *map(str, crds)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


class IstioProxy:
    """A real Envoy running Istio's translation; every cluster answered by a backend named after it."""

    def __init__(self, boot: dict, admin: int):
        self.stack = ExitStack()
        for c in boot["staticResources"]["clusters"]:
            if c["name"] == "BlackHoleCluster":
                continue
            b = self.stack.enter_context(SampleApp(c["name"]))
            for k in ("dnsLookupFamily", "respectDnsTtl", "dnsRefreshRate", "typedDnsResolverConfig", "lbPolicy",
                      "originalDstLbConfig", "dnsJitter"):
                c.pop(k, None)
            c["type"] = "STATIC"
            c["loadAssignment"] = {"clusterName": c["name"], "endpoints": [{"lbEndpoints": [{"endpoint": {
                "address": {"socketAddress": {"address": "127.0.0.1", "portValue": b.port}}}}]}]}
            c.pop("typedExtensionProtocolOptions", None)  # plain HTTP/1.1 to the test backend
        # each listener on a port picked now, while the backends hold theirs (one picked before could have
        # been given to a backend since); ask() takes the port asked of translate
        self.ports: dict[int, int] = {}
        for listener in boot["staticResources"]["listeners"]:
            sa = listener["address"]["socketAddress"]
            asked, sa["portValue"] = sa["portValue"], free_port()
            self.ports[asked] = sa["portValue"]
        admin = free_port()
        boot["admin"]["address"]["socketAddress"]["portValue"] = admin
        self.envoy = self.stack.enter_context(Envoy(json.dumps(boot), admin, name="istio-translated"))

    def get(self, port: int, host: str, headers: dict[str, str]) -> dict:
        return http_get(self.ports.get(port, port), host, headers)

    def ask(self, port: int, host: str, headers: dict[str, str]) -> str:
        r = self.get(port, host, headers)
        return r.get("name") or f"HTTP {r.get('status')}"

    def close(self) -> None:
        self.stack.close()


def cluster_name(dest: dict, port: int) -> str:
    """What answers a request `istio_eval.route` sends to `dest`: the name of the Istio cluster, or the
    status Envoy answers with when there is none."""
    host = dest["host"]
    if host in (NO_ROUTE, NO_CLUSTER):
        return "HTTP 404" if host == NO_ROUTE else "HTTP 503"
    return f"outbound|{(dest.get('port') or {}).get('number') or port}|{dest.get('subset') or ''}|{host}"


def known_hosts(objects: list[dict]) -> set[str]:
    return {f"{o['metadata']['name']}.{o['metadata']['namespace']}.svc.cluster.local"
            for o in objects if o.get("kind") == "Service"}


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


# The checks the conformance tests run (tests/test_istio_conformance.py, tests/test_gateway_api_conformance.py)

GROUPS = {"istio": "networking.istio.io/", "gateway-api": "gateway.networking.k8s.io/"}
def golden_cases(backend: str) -> list[str]:
    """The golden cases with output for `backend`."""
    return [c for c in cases() if any((GOLDEN / c / "expected" / backend).rglob("*.yaml"))]


def input_documents(case: str) -> list[dict]:
    docs = []
    for f in sorted((GOLDEN / case / "input").rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]
    return docs


def variants(key: str, baggage_key: str, header: str) -> list[tuple[str, dict[str, str], bool]]:
    """(what, headers, carries the key)."""
    return [
        ("no key", {}, False),
        ("plain header", {header: key}, True),
        ("baggage", {"baggage": f"{baggage_key}={key}"}, True),
        ("baggage among members, with properties and spaces",
         {"baggage": f"userId=7, {baggage_key} = {key};ttl=3 , other=x"}, True),
        ("baggage, a longer key name", {"baggage": f"x{baggage_key}={key}"}, False),
        ("baggage, a longer value", {"baggage": f"{baggage_key}={key}0"}, False),
        ("another key", {header: key + "-other"}, False),
    ]


def expected(backend: str, world: list[dict], svc, port: int, headers: dict[str, str], known: set[str]) -> set[str]:
    """What meshforge's fast evaluators say may answer the request: Istio cluster names (several where a
    weighted split sends it to any of them) or an HTTP status."""
    multi = {k: [v] for k, v in headers.items()}
    if backend == "istio":
        return {cluster_name(route(world, svc.fqdn, port, multi, known), port)}
    refs = gateway_backends(world, svc.namespace, svc.name, port, multi)
    if refs is None:
        return {f"outbound|{port}||{svc.fqdn}"}
    return {f"outbound|{r.get('port') or port}||{r['name']}.{r['namespace']}.svc.cluster.local" for r in refs}


def referenced_services(routes: list[dict], world: list[dict]) -> list[dict]:
    """A Service for each backendRef of the user's own routes that the cluster of the case does not hold (in a
    real cluster they exist: a route to a missing Service answers 500)."""
    have = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in world if o.get("kind") == "Service"}
    out = []
    for o in routes:
        ns = o["metadata"]["namespace"]
        for rule in (o.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                key = (ref.get("namespace") or ns, ref["name"])
                if ref.get("kind", "Service") == "Service" and key not in have:
                    have.add(key)
                    out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": key[1], "namespace": key[0]},
                                "spec": {"clusterIP": f"10.98.0.{len(out) + 1}", "selector": {"mf-test-service": key[1]},
                                         "ports": [{"name": "http", "port": ref.get("port") or 80,
                                                    "targetPort": ref.get("port") or 80}]}})
    return out


def check_golden_case(backend: str, case: str, tmp_path: Path) -> None:
    """Every key of the case through Istio's translation of `render --format BACKEND` (Istio itself for istio,
    Istio's GAMMA implementation for gateway-api), with the variants of `variants`."""
    with chdir(GOLDEN / case):
        model, diags = compile_paths(["input"] + extra_inputs(case), NOW, namespace(case))
    assert model is not None
    group = GROUPS[backend]
    files = backends.get(backend).render(model, Diagnostics()) + backends.get("kubernetes").render(model, Diagnostics())
    rendered = [r.body for r in files if r.body is not None]
    routing_objects = [o for o in rendered if o["apiVersion"].startswith(group)]
    generated = [o for o in rendered if not o["apiVersion"].startswith(group)]
    # the user's own routing objects meshforge does not write (their DestinationRules, say) are in the cluster too
    written = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in routing_objects}
    theirs = [o for o in input_documents(case) if str(o.get("apiVersion", "")).startswith(group)
              and (o["kind"], (o.get("metadata") or {}).get("namespace", namespace(case)),
                   (o.get("metadata") or {}).get("name")) not in written]
    for o in theirs:
        o.setdefault("metadata", {}).setdefault("namespace", namespace(case))
    if backend == "gateway-api":  # as the API server stores them: with their CRD's defaults (Istio relies on them)
        theirs, routing_objects = ([with_defaults(gateway_validators()[(o["apiVersion"], o["kind"])].schema, o)
                                    for o in objs] for objs in (theirs, routing_objects))
    world = cluster_objects(model, generated) + theirs + routing_objects
    if backend == "gateway-api":
        world[:0] = referenced_services(theirs, world)
    routing = model.routing
    known = known_hosts(world)
    checked = 0
    # the forked services, by the sidecar that calls them: one translation and one Envoy for as many as have
    # ports of their own (the translator names its listeners after the port number)
    groups: list[tuple[str, list, set[int]]] = []
    for sid in sorted(model.forks_by_service):
        svc = model.service_by_id[sid]
        numbers = {p.number for p in svc.routable_ports}
        if not numbers:
            continue
        caller = next((s for s in model.services if s.id != sid), svc)
        group = next((g for g in groups if g[0] == caller.id and not g[2] & numbers), None)
        if group is None:
            group = (caller.id, [], set())
            groups.append(group)
        group[1].append(svc)
        group[2].update(numbers)
    for caller_id, called, _ in groups:
        caller = model.service_by_id[caller_id]
        ports = {svc.id: sorted({p.number for p in svc.routable_ports}) for svc in called}
        local = {(sid, p): lp for (sid, p), lp in zip([(sid, p) for sid, ps in ports.items() for p in ps],
                                                      free_ports(sum(map(len, ports.values()))))}
        admin = free_ports(1)[0]
        boot = translate(tmp_path, world, f"sidecar:{caller.name}.{caller.namespace}",
                         {f"{sid}:{p}": lp for (sid, p), lp in local.items()}, admin,
                         sorted(GATEWAY_CRDS.glob("*.yaml")) if backend == "gateway-api" else ())
        proxy = IstioProxy(boot, admin)
        try:
            for svc in called:
                sid = svc.id
                for kr in model.keys:
                    if not any(f.service == sid for f in kr.forks):
                        continue
                    for port in ports[sid]:
                        for what, headers, keyed in variants(kr.key, routing.baggage_key, routing.header):
                            want = expected(backend, world, svc, port, headers, known)
                            got = proxy.ask(local[(sid, port)], f"{svc.fqdn}:{port}", headers)
                            assert got in want, (f"{backend} {case}: {sid}:{port}, key {kr.key}, {what}: Istio "
                                                 f"routed to {got}, meshforge means {want}")
                            if not keyed:  # without the key: never where only the key goes
                                fork = expected(backend, world, svc, port, {routing.header: kr.key}, known) - \
                                    expected(backend, world, svc, port, {}, known)
                                assert got not in fork, (case, sid, port, what, got)
                            checked += 1
        finally:
            proxy.close()
    assert checked > 0 or not model.keys


def rendered_world(case: str, backend: str):
    with chdir(GOLDEN / case):
        model, _ = compile_paths(["input"] + extra_inputs(case), NOW, namespace(case))
    group = GROUPS[backend]
    files = backends.get(backend).render(model, Diagnostics()) + backends.get("kubernetes").render(model, Diagnostics())
    rendered = [r.body for r in files if r.body is not None]
    routing_objects = [o for o in rendered if o["apiVersion"].startswith(group)]
    if backend == "gateway-api":
        routing_objects = [with_defaults(gateway_validators()[(o["apiVersion"], o["kind"])].schema, o)
                           for o in routing_objects]
    generated = [o for o in rendered if not o["apiVersion"].startswith(group)]
    return model, cluster_objects(model, generated) + routing_objects


def edge_gateway(backend: str, edge) -> tuple[str, list[dict]]:
    """The gateway the edge's routes are bound to, as its operator would have written it (HTTP on 8080, routes
    from every namespace), and the proxy that runs it."""
    gw_ns, gw_name = (edge.istio_gateway if backend == "istio" else edge.gateway).split("/")
    if backend == "istio":
        gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
              "metadata": {"name": gw_name, "namespace": gw_ns},
              "spec": {"selector": {"istio": "ingressgateway"},
                       "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*/*"]}]}}
        proxy = f"gateway:ingressgateway.{gw_ns}"
    else:
        gw = with_defaults(gateway_validators()[("gateway.networking.k8s.io/v1", "Gateway")].schema, {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": gw_name, "namespace": gw_ns},
            "spec": {"gatewayClassName": "istio", "listeners": [
                {"name": "http", "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
        # what Istio's deployment controller would run for it: a Service `<name>-istio` over the gateway's pod
        svc, select = f"{gw_name}-istio", {"gateway.networking.k8s.io/gateway-name": gw_name}
        proxy = f"gateway:{svc}.{gw_ns}"
        return proxy, [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": gw_ns}}, gw,
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": gw_ns},
             "spec": {"clusterIP": "10.97.0.1", "selector": select,
                      "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "appProtocol": "http"}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{svc}-0", "namespace": gw_ns, "labels": select},
             "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"}]},
             "status": {"phase": "Running", "podIP": "10.97.1.1", "podIPs": [{"ip": "10.97.1.1"}],
                        "conditions": [{"type": "Ready", "status": "True"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": svc, "namespace": gw_ns, "labels": {"kubernetes.io/service-name": svc}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
             "endpoints": [{"addresses": ["10.97.1.1"], "conditions": {"ready": True},
                            "targetRef": {"kind": "Pod", "name": f"{svc}-0", "namespace": gw_ns}}]}]
    return proxy, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": gw_ns}}, gw]


def check_edge(backend: str, tmp_path: Path) -> None:
    """The edge's VirtualServices (or HTTPRoutes) on an ingress gateway, as Istio binds them to its Gateway
    (an Istio Gateway, or a Gateway API Gateway of class istio): the public hosts remove any key a caller sent
    (header and baggage), each preview host sets its key in both carriers (replacing a baggage key the caller
    sent, keeping other members where no key was sent) and goes to the key's version of the edge service,
    and a preview host no key holds answers meshforge's 404."""
    model, world = rendered_world("edge", backend)
    edge = model.edge
    gateway, objects = edge_gateway(backend, edge)
    world += objects
    local, admin = free_ports(2)
    proxy = IstioProxy(translate(tmp_path, world, gateway, {"8080": local}, admin,
                                 sorted(GATEWAY_CRDS.glob("*.yaml")) if backend == "gateway-api" else ()), admin)
    svc = model.service_by_id[edge.service]
    frontend = f"outbound|{edge.port}||{svc.fqdn}"
    bk, hdr = model.routing.baggage_key, model.routing.header
    try:
        for host in edge.hosts:
            for sent in ({}, {hdr: "k7x2m9"}, {"baggage": f"{bk}=k7x2m9"}, {"baggage": "a=1"},
                         {hdr: "x", "baggage": f"a=1,{bk}=x;p=1"}):
                r = proxy.get(local, host, sent)
                assert r.get("name") == frontend, (host, sent, r)
                assert r["key"] is None, (host, sent, r)
                assert not any(bk in b for b in r["baggage"]), (host, sent, r)
                if sent.get("baggage") == "a=1":
                    assert r["baggage"] == ["a=1"], r  # members that are not the key pass
        for kr in model.keys:
            host = edge.preview_host(kr.key)
            # the key's version of the edge service: where the edge service's own routes send the key
            want = expected(backend, world, svc, edge.port, {hdr: kr.key}, known_hosts(world))
            for sent in ({}, {hdr: "other"}, {"baggage": "a=1"}, {"baggage": f"{bk}=other"}):
                r = proxy.get(local, host, sent)
                assert r.get("name") in want, (host, sent, r)
                assert r["key"] == kr.key, (host, sent, r)
                members = [m.split(";")[0].strip() for b in r["baggage"] for m in b.split(",")]
                assert f"{bk}={kr.key}" in members and f"{bk}=other" not in members, (host, sent, r)
        r = proxy.get(local, f"no-such-key.{edge.preview_domain}", {})
        assert r["status"] == 404, r  # Gateway API has no direct response: no route, the gateway's empty 404
        assert backend == "gateway-api" or "no active sandbox or route group" in r["body"], r
    finally:
        proxy.close()
