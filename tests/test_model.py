"""model: names that reach a service, lookups, the destination union, expiry, JSON round trip."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from meshforge.diagnostics import Span
from meshforge.model import (
    DESTINATION_KINDS,
    Endpoint,
    EndpointsDestination,
    Fork,
    HostDestination,
    KeyRoutes,
    LocalDestination,
    Model,
    Port,
    Routing,
    Sandbox,
    Service,
    SubsetDestination,
    UserObject,
    WorkloadDestination,
    from_json,
    to_json,
)

from .conftest import BASELINE, NOW
from .specs import route_group, sandbox

WEB = Service("web", "shop", "cluster.local", (Port("http", 80, "HTTP"),))
API = Service("api", "billing", "corp.internal", (Port("grpc", 90, "GRPC"),))
OTHER_WEB = Service("web", "other", "cluster.local", (Port("http", 80, "HTTP"),))


def test_names_from_the_services_own_namespace_include_the_bare_name():
    assert WEB.names("shop") == ("web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local")
    assert WEB.names("elsewhere") == ("web.shop", "web.shop.svc", "web.shop.svc.cluster.local")
    assert API.names(None) == ("api.billing", "api.billing.svc", "api.billing.svc.corp.internal")


@pytest.mark.parametrize("ref", ["web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"])
def test_lookup_accepts_every_name_that_reaches_a_service(ref):
    model = Model(Routing(), (API, WEB), ())
    assert model.lookup(ref, "shop") is WEB
    assert model.lookup(ref) is WEB  # from outside: a bare name is unique here


def test_lookup_agrees_with_names_everywhere():
    model = Model(Routing(), (API, OTHER_WEB, WEB), ())
    for svc in model.services:
        for ns in ("shop", "billing", "other", None):
            for name in svc.names(ns):
                assert model.lookup(name, ns) is svc, (name, ns)
    assert model.lookup("web") is None  # two services are called web: ambiguous from outside
    assert model.lookup("web", "billing") is None  # a bare name reaches only its own namespace
    assert model.lookup("api.billing.svc.cluster.local") is None  # not its cluster domain


def test_destination_union_is_closed_and_tagged():
    assert set(DESTINATION_KINDS) == {HostDestination, EndpointsDestination, SubsetDestination, WorkloadDestination,
                                      LocalDestination}
    assert len({k.kind for k in DESTINATION_KINDS}) == len(DESTINATION_KINDS)
    assert HostDestination("h", 81).describe() == "host h:81"
    assert EndpointsDestination((Endpoint("10.0.0.1", 80),)).describe() == "endpoints 10.0.0.1:80"
    assert EndpointsDestination((Endpoint("fd00::2", 80), Endpoint("10.0.0.2", 80))).describe() == \
        "endpoints [fd00::2]:80, 10.0.0.2:80"
    assert SubsetDestination((("version", "p"),)).describe() == "subset version=p"
    assert LocalDestination("a@example.com").describe() == "a laptop (meshforge connect) of a@example.com"


def test_next_expiry_is_the_earliest_active_sandbox():
    def sb(name, at, expired=False):
        return Sandbox(name, "shop", name, (), at, expired, ())

    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=1)
    model = Model(Routing(), (), (), (sb("a", later), sb("b", soon), sb("c", None), sb("d", NOW, expired=True)))
    assert model.next_expiry == soon
    assert Model(Routing(), (), ()).next_expiry is None


def test_user_objects_are_immutable_and_hashable():
    body = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
            "spec": {"hosts": ["web"]}}
    obj = UserObject.of(body, "vs", "shop", Span("vs.yaml", 1, 1))
    copy = obj.body
    copy["spec"]["hosts"].append("evil")
    assert obj.body == body and hash(obj) == hash(UserObject.of(body, "vs", "shop", obj.origin))
    assert (obj.group, obj.kind) == ("networking.istio.io", "VirtualService")
    model = Model(Routing(), (), (), user_objects=(obj,))
    assert model.user_objects_of("networking.istio.io", "VirtualService") == (obj,)
    assert model.user_objects_of("gateway.networking.k8s.io", "HTTPRoute") == ()


def test_model_round_trips_through_json(write):
    from meshforge.emit.xds.compiler import XdsCompiler
    from meshforge.pipeline import compile_paths

    d = write({"b.yaml": BASELINE,
               "s.yaml": sandbox("pr-1", ("cartservice", "c.example.com"), labels="{f: x}",
                                 expires="2026-12-24T10:00:00+02:00"),
               "g.yaml": route_group("grp", labels="{f: x}"),
               "e.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: e, namespace: shop}\n"
                         "spec:\n  forks:\n  - service: checkout\n    to: {endpoints: [{address: 10.0.0.9, port: 80}]}\n"
                         "  - service: cartservice\n    to: {subset: {labels: {version: e}}}\n",
               "t.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: t}\n"
                         "spec: {tunnel: {host: meshforge-tunnel.meshforge, port: 15080}}\n",
               "l.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: l, namespace: shop}\n"
                         "spec:\n  forks:\n  - service: checkout\n    to: {local: {owner: a@example.com}}\n"})
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    again = from_json(json.loads(json.dumps(to_json(model))))
    assert again == model
    # what backends see: workload forks and forks to laptops are lowered to host forks
    assert {type(f.destination) for k in again.keys for f in k.forks} == \
        set(DESTINATION_KINDS) - {WorkloadDestination, LocalDestination}
    assert [(f.key, f.service, f.owner, f.node) for f in again.local_forks] == \
        [("l", "checkout.shop", "a@example.com", "l.checkout.shop")]
    assert again.tunnel.host == "meshforge-tunnel.meshforge"
    assert again.next_expiry == datetime(2026, 12, 24, 8, tzinfo=timezone.utc)
    only_envoy = Model(model.routing, model.services, tuple(
        KeyRoutes(k.key, k.owner_kind, k.owner, tuple(f for f in k.forks if not isinstance(f.destination,
                                                                                            SubsetDestination)))
        for k in model.keys))
    a = XdsCompiler().compile(only_envoy)
    b = XdsCompiler().compile(from_json(json.loads(json.dumps(to_json(only_envoy)))))
    assert all(a.resources(n) == b.resources(n) for n in a.nodes)


def test_forks_by_service_lists_each_services_keys_in_order():
    f = Fork("web.shop", "s", HostDestination("h"))
    model = Model(Routing(), (WEB,), (KeyRoutes("b", "Sandbox", "s", (f,)), KeyRoutes("a", "Sandbox", "t", (f,))))
    assert [k for k, _ in model.forks_by_service["web.shop"]] == ["b", "a"]  # keys come sorted from resolve
    assert model.destination_of("web.shop", "a") is f and model.destination_of("web.shop", None) is None
