"""spec/parse: documents dispatched by kind into declarations; destinations become typed."""

from __future__ import annotations

from meshforge.diagnostics import Diagnostics
from meshforge.model import EndpointsDestination, HostDestination, SubsetDestination
from meshforge.source import parse_text
from meshforge.spec.parse import finish, parse_file
from meshforge.spec.ports import port_protocol

from .conftest import BASELINE
from .specs import route_group


def parse(text: str):
    d = Diagnostics()
    decls, k8s = parse_file(parse_text(text, "in.yaml", d), d)
    return decls, k8s, d


def test_destinations_are_typed():
    decls, _, d = parse("""\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1, namespace: shop}
spec:
  routingKey: k1
  forks:
  - {service: a, to: {host: a1.example.com, port: 81}}
  - {service: b, to: {endpoints: [{address: 10.0.0.1, port: 80}]}}
  - {service: c, to: {subset: {labels: {version: p}}}}
""")
    assert not d.items
    (sb,) = decls.sandboxes
    assert (sb.name, sb.namespace, sb.key) == ("pr-1", "shop", "k1")
    assert [type(f.destination) for f in sb.forks] == [HostDestination, EndpointsDestination, SubsetDestination]
    assert sb.forks[0].destination == HostDestination("a1.example.com", 81)
    assert sb.forks[2].destination.labels == (("version", "p"),)
    assert sb.forks[1].ref_span.line == 8


def test_kinds_are_dispatched_and_others_set_aside_or_ignored():
    decls, k8s, d = parse(BASELINE + "---\n" + route_group("g", sandboxes=["a"]) + """\
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: vs, namespace: shop}
spec: {hosts: [web]}
""")
    assert not d.items
    assert [s.id for s in decls.services] == ["frontend.shop", "cartservice.shop", "checkout.shop",
                                              "payments.billing", "redis-cart.shop"]
    assert [g.name for g in decls.route_groups] == ["g"]
    # a ConfigMap is kept: containers' environment may come from it (envFrom, valueFrom)
    assert [doc.kind for doc in k8s] == ["Service", "ConfigMap"]
    (vs,) = decls.user_objects
    assert (vs.api_version, vs.kind, vs.namespace, vs.name) == ("networking.istio.io/v1beta1", "VirtualService",
                                                                "shop", "vs")
    merged = finish([decls], k8s, d)
    assert "web.default" in {s.id for s in merged.services}


def test_unknown_meshforge_kind_and_non_object_documents():
    _, _, d = parse("apiVersion: meshforge.dev/v1alpha1\nkind: Sandbx\n---\n- a list\n---\n"
                    "apiVersion: meshforge.dev/v2\nkind: Sandbox\n")
    assert [(x.code, x.span.line) for x in d.items] == [("MF007", 2), ("MF005", 4), ("MF007", 6)]
    assert d.items[0].hint == 'did you mean "Sandbox"?'


def test_port_protocol_follows_istio():
    assert port_protocol("http", None) == "HTTP"
    assert port_protocol("grpc-api", None) == "GRPC"
    assert port_protocol("http2x", None) == "UNKNOWN"
    assert port_protocol("web", "kubernetes.io/h2c") == "HTTP2"
    assert port_protocol("tcp", "HTTP") == "HTTP"
    assert port_protocol("", None) == "UNKNOWN"


def test_endpoint_addresses_are_ips_or_dns_names():
    _, _, d = parse("""\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  forks:
  - {service: a, to: {endpoints: [{address: "10.0.0.1", port: 80}, {address: "::1", port: 80},
                                  {address: "db.example.com", port: 80}, {address: "...", port: 80},
                                  {address: "-a", port: 80}]}}
""")
    assert [(x.code, x.span.pointer) for x in d.items] == [("MF104", "/spec/forks/0/to/endpoints/3/address"),
                                                           ("MF104", "/spec/forks/0/to/endpoints/4/address")]


def test_user_virtual_services_with_names_kubernetes_refuses_are_ignored():
    decls, _, d = parse("apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                        "metadata: {name: vs, namespace: ../../etc}\nspec: {hosts: [web]}\n")
    assert decls.user_objects == [] and [x.code for x in d.items] == ["MF104"]
