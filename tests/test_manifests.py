"""Kubernetes import (spec/manifests.py), on the real Online Boutique manifests."""


import pytest

from meshforge.pipeline import compile_paths
from meshforge.spec.parse import port_protocol

from .conftest import BOUTIQUE, NOW


@pytest.fixture(scope="module")
def boutique():
    model, diags = compile_paths([str(BOUTIQUE)], NOW)
    assert model is not None, diags.items
    return model, diags.items


def deps(model, name):
    return {d.service.split(".")[0] for d in model.service_by_id[f"{name}.default"].depends_on or ()}


def test_services_ports_and_protocols(boutique):
    model, _ = boutique
    got = {s.name: [(p.number, p.protocol) for p in s.ports] for s in model.services}
    assert got == {
        "adservice": [(9555, "GRPC")], "cartservice": [(7070, "GRPC")], "checkoutservice": [(5050, "GRPC")],
        "currencyservice": [(7000, "GRPC")], "emailservice": [(5000, "GRPC")], "frontend": [(80, "HTTP")],
        "frontend-external": [(80, "HTTP")], "paymentservice": [(50051, "GRPC")],
        "productcatalogservice": [(3550, "GRPC")], "recommendationservice": [(8080, "GRPC")],
        "redis-cart": [(6379, "TCP")], "shippingservice": [(50051, "GRPC")],
    }
    assert all(s.namespace == "default" and s.fqdn == f"{s.name}.default.svc.cluster.local" for s in model.services)
    assert model.service_by_id["cartservice.default"].common_labels == {"app": "cartservice"}
    assert not model.service_by_id["redis-cart.default"].routable_ports


def test_real_call_graph_is_inferred(boutique):
    model, _ = boutique
    # frontend also calls shoppingassistantservice, which is not among the manifests: what it calls is not
    # fully known, so its proxy is told about every service rather than short of that call
    assert model.service_by_id["frontend.default"].depends_on is None
    assert deps(model, "checkoutservice") == {"productcatalogservice", "shippingservice", "paymentservice",
                                              "emailservice", "currencyservice", "cartservice"}
    assert deps(model, "recommendationservice") == {"productcatalogservice"}
    assert deps(model, "cartservice") == {"redis-cart"}
    assert model.service_by_id["adservice.default"].depends_on is None  # nothing known: told everything
    assert all(d.inferred for d in model.service_by_id["checkoutservice.default"].depends_on)


def test_inferred_edges_are_reported_never_silent(boutique):
    _, diags = boutique
    notes = [d for d in diags if d.code == "MF213"]
    assert any(d.message == "checkoutservice.default depends on paymentservice.default "
               "(inferred from env PAYMENT_SERVICE_ADDR=paymentservice:50051)" and d.span.line == 652 for d in notes)
    # frontend and frontend-external share a Deployment: each inferred edge is said once, naming both
    assert len(notes) == 7 + 6 + 1 + 1
    assert any(d.message.startswith("frontend-external.default, frontend.default depend on cartservice.default")
               for d in notes)
    missing = [d for d in diags if d.code == "MF214"]
    assert len(missing) == 1 and "shoppingassistantservice" in missing[0].message
    assert missing[0].message.startswith("frontend-external.default, frontend.default:")
    assert "dependencies left unknown" in missing[0].message
    unknown = sorted(d.message.split()[2] for d in diags if d.code == "MF224")
    assert unknown == ["frontend-external.default", "frontend.default"]


def test_annotation_declares_dependencies(write):
    d = write({"k.yaml": """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {meshforge.dev/depends-on: "api, db.data"}
spec:
  selector: {app: web}
  ports: [{name: http-web, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{port: 8080, appProtocol: kubernetes.io/h2c}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
"""})
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    web = model.service_by_id["web.shop"]
    assert [(x.service, x.inferred) for x in web.depends_on] == [("api.shop", False), ("db.data", False)]
    assert model.service_by_id["api.shop"].ports[0].protocol == "HTTP2"


@pytest.mark.parametrize("name,app,want", [
    ("http", None, "HTTP"), ("http-web", None, "HTTP"), ("http2", None, "HTTP2"), ("grpc-api", None, "GRPC"),
    ("grpc-web", None, "GRPC-WEB"), ("tcp-redis", None, "TCP"), ("https", None, "HTTPS"), ("web", None, "UNKNOWN"),
    ("", None, "UNKNOWN"), ("tcp", "grpc", "GRPC"), ("x", "HTTP", "HTTP"), ("httpx", None, "UNKNOWN"),
])
def test_istio_port_protocol_rule(name, app, want):
    assert port_protocol(name, app) == want


def test_names_kubernetes_would_refuse_are_skipped_with_a_warning(write):
    d = write({"k.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: "x\\nREADME.md\\ny"}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: "Web_1", namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{name: http, port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata: {labels: {app: api, "bad key": "v", version: "v1\\n"}}
"""})
    model, diags = compile_paths([str(d)], NOW)
    assert [s.id for s in model.services] == ["api.shop"]
    assert model.services[0].common_labels == {"app": "api"}
    assert [(x.code, x.severity, x.span.line) for x in diags.items] == [
        ("MF104", "warning", 3), ("MF104", "warning", 8), ("MF104", "warning", 21), ("MF104", "warning", 21)]


def test_ports_kubernetes_would_refuse_are_named_with_their_place_not_read_as_ports(write):
    d = write({"k.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: "8080"}
  - {name: flag, port: true}
  - just-a-string
  - {name: noport, targetPort: 80}
  - {name: dns, port: 53, protocol: UDP}
  - {name: grpc, port: 9000}
"""})
    model, diags = compile_paths([str(d)], NOW)
    assert [(p.name, p.number) for p in model.service_by_id["web.shop"].ports] == [("grpc", 9000)]  # true is not 1
    got = [(x.code, x.severity, x.span.line, x.message) for x in diags.items]
    assert [g[:3] for g in got] == [("MF104", "warning", 7), ("MF104", "warning", 8), ("MF104", "warning", 9),
                                    ("MF104", "warning", 10)], got
    assert "ports[0] has port '8080', which is not a number" in got[0][3]
    assert "ports[1] has port True" in got[1][3] and "ports[2] is not a mapping" in got[2][3]
    assert "ports[3] has no port" in got[3][3]
    assert all("{name: http, port: 80}" in x.hint for x in diags.items)


def test_amendments_that_do_not_fit_are_errors_with_their_place(write):
    d = write({"k.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
                         "spec: {ports: [{name: web, port: 8080}]}\n",
               "b.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: a, namespace: shop}\n"
                         "spec:\n  services:\n  - name: web\n    ports: [{port: 9999, appProtocol: http}]\n"
                         "  - name: ghost\n    dependsOn: []\n"})
    model, diags = compile_paths([str(d)], NOW)
    assert model is None
    assert [(x.code, x.span.file.endswith("b.yaml"), x.span.line) for x in diags.errors()] == [
        ("MF212", True, 7), ("MF102", True, 8)]


def test_a_list_item_is_blamed_at_its_place_in_the_list(write):
    d = write({"list.yaml": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n"
                            "  metadata: {name: web, namespace: \"Bad_NS\"}\n  spec: {ports: [{name: http, port: 80}]}\n"})
    model, diags = compile_paths([str(d)], NOW)
    (w,) = diags.items
    assert (w.code, w.span.line, w.span.pointer) == ("MF104", 6, "/items/0/metadata/namespace")


def test_inference_reads_what_kubernetes_resolves_and_leaves_the_rest_unknown():
    """golden/inference: values that only look like addresses are no references; $(VAR), host and port in
    two variables, envFrom and valueFrom are read; a ConfigMap or Secret that is not among the inputs, or a
    reference to a service that is not, leaves the dependencies unknown; declared ones silence inference."""
    from pathlib import Path

    from meshforge.pipeline import compile_paths

    model, diags = compile_paths([str(Path(__file__).resolve().parents[1] / "golden" / "inference" / "input")])
    assert model is not None

    def calls(name):
        d = model.service_by_id[f"{name}.apps"].depends_on
        return None if d is None else {x.service.split(".")[0] for x in d}

    assert calls("web") == {"api", "otel-collector"}  # versions, files, localhost, an outside host: no calls
    assert calls("cart") == {"flagd", "redis", "postgres"}  # envFrom, FLAGD_HOST / REDIS_HOST, a Secret's URL
    assert calls("billing") is None  # its envFrom Secret is not among the inputs
    assert calls("ui") is None  # it names `search`, which is not among the inputs
    assert calls("api") == set()  # declared: calls nothing, whatever its env says
    warnings = [d for d in diags.items if d.code == "MF214"]
    assert [w.message.split(":")[0] for w in warnings] == ["ui.apps"]  # nothing about 2.1.3, dist/x.js, ghost
    assert "pw" not in " ".join(d.message for d in diags.items)  # a Secret's value is never shown
    unknown = {d.message.split()[2]: d.message for d in diags.items if d.code == "MF224"}
    assert set(unknown) == {"billing.apps", "ui.apps"} and "Secret billing-secrets" in unknown["billing.apps"]
