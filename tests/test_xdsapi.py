"""xdsapi: the type table every xDS place derives from, and the consistency check of a node's resources."""

from __future__ import annotations

from dataclasses import replace

from meshforge import xdsapi
from meshforge.emit.xds.compiler import XdsCompiler
from meshforge.pipeline import compile_paths
from meshforge.xdsapi import CLUSTER_TYPE, ROUTE_TYPE, TYPES, Derived, XdsType, consistent

from .conftest import NOW, SHOP


def test_adding_an_xds_type_is_one_row():
    """SDS, say: one XdsType, and the push order, wildcard set, metric labels and rendered sections follow."""
    sds = XdsType("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "SDS", "secrets",
                  "envoy.extensions.transport_sockets.tls.v3.secret_pb2",
                  "envoy.extensions.transport_sockets.tls.v3.Secret", False, -1, 4)
    d = Derived.of(TYPES + (sds,))
    assert d.push_order[0] == sds.url  # secrets before the clusters that use them
    assert d.short_names[sds.url] == "SDS" and d.render_order[-1] == sds.url and sds.url not in d.wildcard
    assert xdsapi.message_class(CLUSTER_TYPE).DESCRIPTOR.full_name == "envoy.config.cluster.v3.Cluster"
    assert Derived.of(TYPES).push_order == xdsapi.PUSH_ORDER == (
        CLUSTER_TYPE, xdsapi.ENDPOINT_TYPE, xdsapi.LISTENER_TYPE, ROUTE_TYPE)


def test_every_node_of_a_compiled_mesh_is_consistent_and_a_missing_cluster_is_found(write):
    model, diags = compile_paths([str(write(SHOP))], NOW)
    assert model is not None, diags.items
    from meshforge.backends import check, get
    from meshforge.diagnostics import Diagnostics

    xds_ok = Diagnostics()
    check(model, get("xds"), xds_ok)
    snap = XdsCompiler().compile(model if not xds_ok.has_errors else _without_subsets(model))
    for node in snap.nodes:
        assert consistent(snap.resources(node)) == [], node
    res = snap.resources("frontend.shop")
    clusters = dict(res[CLUSTER_TYPE])
    gone = sorted(clusters)[0]
    del clusters[gone]
    problems = consistent({**res, CLUSTER_TYPE: clusters})
    assert problems and all(gone in p for p in problems) and problems[0].startswith("RDS meshforge_outbound names CDS")


def _without_subsets(model):
    from meshforge.model import SubsetDestination

    keys = tuple(replace(k, forks=tuple(f for f in k.forks if not isinstance(f.destination, SubsetDestination)))
                 for k in model.keys)
    return replace(model, keys=tuple(k for k in keys if k.forks), change=None)


def test_every_golden_mesh_is_consistent_on_every_node():
    """What a compiler slip would break first: a route, listener or load assignment naming something the node
    is not sent. Every golden case's xDS snapshot, every node (the edge included)."""
    from meshforge.backends import check, get
    from meshforge.diagnostics import Diagnostics

    from .golden import GOLDEN, cases, chdir, extra_inputs, namespace

    checked = 0
    for case in cases():
        with chdir(GOLDEN / case):
            model, _ = compile_paths(["input"] + extra_inputs(case), NOW, namespace(case))
        if model is None:
            continue
        d = Diagnostics()
        check(model, get("xds"), d)
        snap = XdsCompiler().compile(model if not d.has_errors else _without_subsets(model))
        for node in snap.nodes:
            assert consistent(snap.resources(node)) == [], (case, node)
            checked += 1
    assert checked > 50


def test_a_resource_sets_version_is_its_contents_hashed_once():
    from meshforge.xdsapi import Resource, ResourceSet, version_of

    a, b = Resource.of("a", CLUSTER_TYPE, b"1"), Resource.of("b", CLUSTER_TYPE, b"2")
    rs = ResourceSet({"a": a, "b": b})
    assert rs.version == version_of({"b": b, "a": a}) == version_of(ResourceSet([("b", b), ("a", a)]))  # any order
    assert rs.version != version_of({"a": a}) != version_of({"a": Resource.of("a", CLUSTER_TYPE, b"3")})
    assert version_of({}) == ResourceSet().version
    kept = rs.version
    dict.__setitem__(rs, "c", a)  # a set is never changed once made: its version is taken once and kept
    assert rs.version == kept != version_of(dict(rs))
