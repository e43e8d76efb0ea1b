"""Gateway API backend: strict CRD validity, placement on the Service, precedence, and requests landing
where `explain` says (header and baggage carriers, route groups, expiry, several ports)."""

from __future__ import annotations

import pytest
import yaml

from meshforge import backends
from meshforge.diagnostics import Diagnostics
from meshforge.emit import gateway_api
from meshforge.explain import explain
from meshforge.model import HostDestination
from meshforge.pipeline import compile_paths

from .conftest import BK, NOW
from .gateway_eval import route
from .istio_schema import gateway_errors

SPECS = {
    "baseline.yaml": """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging, namespace: shop}
spec:
  services:
  - {name: frontend, ports: [{name: http, port: 80}], dependsOn: [cart, payments.billing]}
  - {name: cart, ports: [{name: http, port: 80}, {name: grpc, port: 7070}], dependsOn: []}
  - {name: payments, namespace: billing, ports: [{name: http-api, port: 8080}], dependsOn: []}
""",
    "sandboxes.yaml": """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: cart-pr-1, namespace: shop, labels: {feature: checkout}}
spec:
  forks: [{service: cart, to: {host: cart-pr-1.shop.svc.cluster.local}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pay-pr-2, namespace: shop, labels: {feature: checkout}}
spec:
  routingKey: k7x2m9
  forks: [{service: payments.billing, to: {host: payments-v2.shop.svc.cluster.local, port: 9000}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: old, namespace: shop}
spec:
  expiresAt: "2020-01-01T00:00:00Z"
  forks: [{service: cart, to: {host: cart-old.shop.svc.cluster.local}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: RouteGroup
metadata: {name: checkout}
spec:
  match: {labels: {feature: checkout}}
""",
}


def compile_dir(d):
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    return model


def test_every_object_validates_strictly_and_attaches_to_the_service(write):
    model = compile_dir(write(SPECS))
    diags = Diagnostics()
    objs = gateway_api.emit(model, diags)
    assert not diags.items
    assert sorted((o.kind, o.namespace, o.name) for o in objs) == [
        ("GRPCRoute", "shop", "meshforge-cart.7070"), ("GRPCRoute", "shop", "meshforge-cart.7070.cart-pr-1"),
        ("GRPCRoute", "shop", "meshforge-cart.7070.checkout"),
        ("HTTPRoute", "billing", "meshforge-payments.8080"), ("HTTPRoute", "billing", "meshforge-payments.8080.checkout"),
        ("HTTPRoute", "billing", "meshforge-payments.8080.k7x2m9"),
        ("HTTPRoute", "shop", "meshforge-cart.80"), ("HTTPRoute", "shop", "meshforge-cart.80.cart-pr-1"),
        ("HTTPRoute", "shop", "meshforge-cart.80.checkout"),
        ("ReferenceGrant", "shop", "meshforge-routes")]
    for o in objs:
        assert gateway_errors(o.body) == [], (o.kind, o.name, gateway_errors(o.body))
        assert o.body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshforge"
        if o.kind != "ReferenceGrant":
            ref, = o.body["spec"]["parentRefs"]
            assert ref["group"] == "" and ref["kind"] == "Service"
            rules = o.body["spec"]["rules"]
            assert len(rules) <= 16 and sum(len(r.get("matches") or []) for r in rules) <= 64
    labels = {o.name: o.body["metadata"]["labels"] for o in objs}
    assert labels["meshforge-cart.80.cart-pr-1"]["meshforge.dev/sandbox"] == "cart-pr-1"
    assert labels["meshforge-cart.80.checkout"]["meshforge.dev/route-group"] == "checkout"
    grant = next(o for o in objs if o.kind == "ReferenceGrant").body["spec"]
    assert grant["from"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "billing"}]


def test_the_validator_rejects_what_the_api_server_would():
    ok = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
          "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "s"}], "rules": [{"backendRefs": [{"name": "s", "port": 80}]}]}}
    assert gateway_errors(ok) == []
    unknown = yaml.safe_load(yaml.safe_dump(ok))
    unknown["spec"]["rules"][0]["weightless"] = 1
    assert gateway_errors(unknown)
    too_many = yaml.safe_load(yaml.safe_dump(ok))
    too_many["spec"]["rules"] = too_many["spec"]["rules"] * 17
    assert gateway_errors(too_many)
    cel = yaml.safe_load(yaml.safe_dump(ok))
    cel["spec"]["rules"][0]["filters"] = [{"type": "RequestHeaderModifier"}]  # CEL: the type needs its field
    assert any("requestHeaderModifier" in e for e in gateway_errors(cel))


def carriers(key: str) -> list[dict]:
    return [{"x-meshforge-routing-key": [key]}, {"X-Meshforge-Routing-Key": [key]}, {"baggage": [f"{BK}={key}"]},
            {"baggage": [f"a=1, {BK} = {key};ttl=3"]}, {"baggage": ["a=1", f"{BK}={key}"]}]


@pytest.mark.parametrize("header_only", [False, True])
def test_requests_land_where_explain_says(write, header_only):
    model = compile_dir(write(SPECS))
    objs = [o.body for o in gateway_api.emit(model, Diagnostics(), header_only)]
    checked = 0
    for key in [k.key for k in model.keys] + ["old", "nobody"]:
        for hop in explain(model, model.service_by_id["frontend.shop"], key).hops:
            svc = model.service_by_id[hop.service]
            fork = model.destination_of(svc.id, key)
            assert (hop.version == "sandbox") == (fork is not None)
            for port in svc.routable_ports:
                for headers in carriers(key) + [{}]:
                    got = route(objs, svc.namespace, svc.name, port.number, headers)
                    if svc.id not in model.forks_by_service:
                        assert got is None  # no route: plain Kubernetes routing to the Service
                        continue
                    reached = fork is not None and headers and not (header_only and "baggage" in headers)
                    if reached:
                        assert isinstance(fork.destination, HostDestination)
                        name, ns = model.cluster_service(fork.destination.host, svc.namespace)
                        want = {"namespace": ns, "name": name, "port": fork.destination.port or port.number}
                    else:
                        want = {"namespace": svc.namespace, "name": svc.name, "port": port.number}
                    assert got == want, (key, svc.id, port.number, headers)
                    checked += 1
    assert checked > 60


def test_static_endpoints_get_a_service_and_an_endpoint_slice(write):
    d = write({**SPECS, "more.yaml": """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: vm, namespace: shop}
spec:
  forks: [{service: frontend, to: {endpoints: [{address: 10.0.0.9, port: 8080}, {address: "fd00::9", port: 8080}]}}]
"""})
    diags = Diagnostics()
    files = backends.render(compile_dir(d), "gateway-api", diags)
    assert not diags.has_errors, diags.items
    docs = [yaml.safe_load(t) for t in files.values()]
    name = gateway_api.endpoints_service(compile_dir(d).lookup("frontend.shop"), "vm")
    [svc] = [o for o in docs if o["kind"] == "Service"]
    assert svc["metadata"]["name"] == name and "selector" not in svc["spec"]
    assert svc["metadata"]["labels"]["meshforge.dev/sandbox"] == "vm"
    slices = sorted((o for o in docs if o["kind"] == "EndpointSlice"), key=lambda o: o["addressType"])
    assert [(s["addressType"], s["endpoints"][0]["addresses"]) for s in slices] == [("IPv4", ["10.0.0.9"]),
                                                                                  ("IPv6", ["fd00::9"])]
    assert all(s["metadata"]["labels"]["kubernetes.io/service-name"] == name for s in slices)
    assert {p["port"] for s in slices for p in s["ports"]} == {8080}
    route = next(o for o in docs if o["metadata"]["name"].endswith(".vm"))
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": name, "port": svc["spec"]["ports"][0]["port"]}]
    import kubernetes_validate

    for o in (svc, *slices):
        kubernetes_validate.validate(o, kubernetes_validate.latest_version(), strict=True)


def test_dns_endpoints_are_refused_with_a_hint(write):
    d = write({**SPECS, "more.yaml": """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: vm, namespace: shop}
spec:
  forks: [{service: frontend, to: {endpoints: [{address: vm.example.com, port: 80}]}}]
"""})
    diags = Diagnostics()
    assert backends.render(compile_dir(d), "gateway-api", diags) == {}
    err, = [x for x in diags.items if x.code == "MF301"]
    assert "DNS names" in err.message and "IP addresses" in err.hint


def test_a_host_outside_the_cluster_is_refused(write):
    d = write({**SPECS, "more.yaml": """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: ext, namespace: shop}
spec:
  forks: [{service: frontend, to: {host: frontend.staging.example.com}}]
"""})
    diags = Diagnostics()
    assert backends.render(compile_dir(d), "gateway-api", diags) == {}
    assert any(x.code == "MF301" and "frontend.staging.example.com" in x.message for x in diags.items)


def test_user_routes_that_outrank_the_key_rules_are_reported(write):
    d = write({**SPECS, "user.yaml": """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart-canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: cart-canary, port: 80}]
  - backendRefs: [{name: cart, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: harmless, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart}]
  rules:
  - backendRefs: [{name: cart, port: 80}]
"""})
    diags = Diagnostics()
    objs = [o.body for o in gateway_api.emit(compile_dir(d), diags)]
    warned = [x for x in diags.items if x.code == "MF306"]
    assert len(warned) == 1 and "shop/cart-canary rule 0" in warned[0].message
    user = yaml.safe_load_all((d / "user.yaml").read_text())
    everything = objs + [u for u in user]
    # what the warning says: a keyed request under /api goes to the user's backend
    got = route(everything, "shop", "cart", 80, {"x-meshforge-routing-key": ["cart-pr-1"]}, path="/api/x")
    assert got["name"] == "cart-canary"
    assert route(everything, "shop", "cart", 80, {"x-meshforge-routing-key": ["cart-pr-1"]})["name"] == "cart-pr-1"


def test_output_is_byte_identical_whatever_the_file_order(write, cli):
    d = write(SPECS)
    a = cli("render", d / "sandboxes.yaml", d / "baseline.yaml", "--format", "gateway-api", "--now", "2026-11-26T00:00:00Z")
    b = cli("render", d, "--format", "gateway-api", "--now", "2026-11-26T00:00:00Z")
    assert a.exit_code == 0 and a.output == b.output and "HTTPRoute" in a.output
    c = cli("render", d, "--format", "gateway-api", "--header-only", "--now", "2026-11-26T00:00:00Z")
    assert c.exit_code == 0 and "RegularExpression" not in c.output
    assert cli("render", d, "--format", "istio", "--header-only").exit_code == 2


def test_user_routes_of_any_shape_are_checked_without_crashing(write):
    hostile = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: shop}
spec: {parentRefs: "x", rules: "abc"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: cart}, {kind: Service, name: [1]}, 3, {kind: Service, name: cart, namespace: 7}]
  rules: [null, 3, {matches: "x"}, {matches: [3, {path: 5, headers: {a: 1}}, {path: {value: 9}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: c, namespace: shop}
spec: [1, 2]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: d, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: cart, port: 7070}]
  rules: [{matches: [{method: {service: x}, headers: "h"}]}]
"""
    diags = Diagnostics()
    objs = gateway_api.emit(compile_dir(write({**SPECS, "hostile.yaml": hostile})), diags)
    assert objs and not diags.has_errors
    assert [x.message.split(" rule")[0] for x in diags.items if x.code == "MF306"] == ["GRPCRoute shop/d"]
    assert [x.message.split(":")[0] for x in diags.items if x.code == "MF307"] == ["HTTPRoute shop/a", "GRPCRoute shop/c"]


def test_a_users_catch_all_route_keeps_its_split_and_meshforge_adds_no_tie(write):
    """A user's HTTPRoute with no matches on a forked Service's port (a 90/10 split) would tie with a default
    rule of meshforge's (both without matches: the oldest route wins, then the name). meshforge adds no default
    there and says so, at the rule's line; keyed requests still reach the fork (its rule outranks any catch-all)."""
    d = write({**SPECS, "split.yaml": """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules:
  - backendRefs: [{name: cart, port: 80, weight: 90}, {name: cart-canary, port: 80, weight: 10}]
"""})
    diags = Diagnostics()
    objs = {o.name: o.body for o in gateway_api.emit(compile_dir(d), diags)}
    assert "meshforge-cart.80" not in objs and "meshforge-cart.80.cart-pr-1" in objs
    [note] = [x for x in diags.items if x.code == "MF310"]
    assert "shop/cart-split rule 0" in note.message and note.span.file.endswith("split.yaml") and note.span.line == 7
    user = list(yaml.safe_load_all((d / "split.yaml").read_text()))
    assert route(list(objs.values()) + user, "shop", "cart", 80, {"x-meshforge-routing-key": ["cart-pr-1"]})[
        "name"] == "cart-pr-1"


def test_mf306_points_at_the_rule(write):
    d = write({**SPECS, "user.yaml": """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart-canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules:
  - backendRefs: [{name: cart, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: cart-canary, port: 80}]
"""})
    diags = Diagnostics()
    gateway_api.emit(compile_dir(d), diags)
    [w] = [x for x in diags.items if x.code == "MF306"]
    assert "rule 1" in w.message and (w.span.line, w.span.column) == (8, 5)
