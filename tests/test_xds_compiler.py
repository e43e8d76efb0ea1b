"""The incremental xDS compiler: byte-level equivalence, determinism, and work that grows with the change."""

from __future__ import annotations

import random
from pathlib import Path

from envoy.config.route.v3 import route_pb2

from meshforge.emit.xds import naming
from meshforge.emit.xds.compiler import XdsCompiler
from meshforge.pipeline import compile_paths
from meshforge.xdsapi import CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE

from .conftest import NOW
from .specs import sandbox


def make_specs(tmp_path, services=30, sandboxes=20, seed=1, deps=True):
    from meshforge.synthetic import generate

    return generate(tmp_path / "specs", services, sandboxes, seed=seed, deps=3 if deps else 0)


def model_of(d):
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    return model


def test_concatenated_route_configuration_equals_protobuf_serialization(tmp_path):
    model = model_of(make_specs(tmp_path))
    snap = XdsCompiler().compile(model)
    for node in list(snap.nodes)[:10]:
        body = snap.nodes[node].routes[naming.ROUTE_CONFIG].body
        msg = route_pb2.RouteConfiguration.FromString(body)
        assert msg.SerializeToString(deterministic=True) == body
        assert msg.name == naming.ROUTE_CONFIG and len(msg.virtual_hosts) >= 1


def test_versions_are_content_hashes_identical_across_compilers(tmp_path):
    model = model_of(make_specs(tmp_path))
    a, b = XdsCompiler().compile(model), XdsCompiler().compile(model)
    for node in a.nodes:
        ra, rb = a.resources(node), b.resources(node)
        assert {t: {n: r.version for n, r in v.items()} for t, v in ra.items()} == \
               {t: {n: r.version for n, r in v.items()} for t, v in rb.items()}


def test_one_sandbox_change_rebuilds_only_what_it_touches(tmp_path):
    from meshforge.synthetic import write_sandbox

    d = make_specs(tmp_path, services=200, sandboxes=100)

    c = XdsCompiler()
    before = c.compile(model_of(d))
    rebuilt_services = c.stats["services_rebuilt"]
    rebuilt_groups = c.stats["groups_rebuilt"]
    assert rebuilt_services == 200 - 0 and rebuilt_groups >= 100
    write_sandbox(d / "sandboxes", 5, random.Random(99), 200, variant=1)  # pr-0005 now forks other services
    after = c.compile(model_of(d))
    assert c.stats["services_rebuilt"] - rebuilt_services <= 10
    assert c.stats["groups_rebuilt"] - rebuilt_groups <= 60
    changed_nodes = [n for n in after.nodes
                     if after.nodes[n].routes[naming.ROUTE_CONFIG].version != before.nodes[n].routes[naming.ROUTE_CONFIG].version]
    assert 0 < len(changed_nodes) < 60
    unchanged = [n for n in after.nodes if n not in changed_nodes]
    assert all(after.nodes[n] is before.nodes[n] or
               after.nodes[n].routes == before.nodes[n].routes for n in unchanged)
    # a fresh compiler agrees byte for byte with the incremental one
    fresh = XdsCompiler().compile(model_of(d))
    for n in after.nodes:
        assert fresh.resources(n) == after.resources(n)


def test_scope_follows_depends_on(tmp_path):
    model = model_of(make_specs(tmp_path, services=10, sandboxes=5))
    snap = XdsCompiler().compile(model)
    svc = model.services[0]
    vhosts = route_pb2.RouteConfiguration.FromString(snap.nodes[svc.id].routes[naming.ROUTE_CONFIG].body).virtual_hosts
    assert {v.name.split(":")[0] for v in vhosts} == {d.service for d in svc.depends_on} | {"unknown-host"}
    clusters = snap.resources(svc.id)[CLUSTER_TYPE]
    assert all(any(d.service.split(".")[0] in name for d in svc.depends_on) for name in clusters)


def test_unknown_node_gets_an_empty_valid_config(tmp_path):
    snap = XdsCompiler().compile(model_of(make_specs(tmp_path, services=5, sandboxes=2)))
    res = snap.resources("nobody.nowhere")
    assert all(v == {} for v in res.values()) and set(res) >= {CLUSTER_TYPE, ROUTE_TYPE}


def test_endpoint_changes_never_churn_clusters(write):
    from .conftest import BASELINE

    sb = ("apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: p, namespace: shop}}\nspec:\n  forks:\n"
          "  - service: cartservice\n    to: {{endpoints: [{{address: 10.0.0.{n}, port: 7070}}]}}\n")
    d = write({"b.yaml": BASELINE, "s.yaml": sb.format(n=1)})
    c = XdsCompiler()
    before = c.compile(model_of(d)).resources("frontend.shop")
    (d / "s.yaml").write_text(sb.format(n=2))
    after = c.compile(model_of(d)).resources("frontend.shop")
    name = naming.cluster(7070, "cartservice.shop.svc.cluster.local", "p")
    assert after[CLUSTER_TYPE] == before[CLUSTER_TYPE]  # same bytes, same versions: no CDS push
    assert after[ENDPOINT_TYPE][name].version != before[ENDPOINT_TYPE][name].version


def test_xds_and_static_outputs_are_byte_identical_whatever_the_file_order(tmp_path, cli):
    from .conftest import SHOP

    texts = [SHOP["b.yaml"].replace("labels: {app: payments, version: v1}", "endpoints: [{address: 10.0.0.9, port: 50051}]"),
             *SHOP["s.yaml"].replace("to: {subset: {labels: {version: pr-7}}}", "to: {host: pay-7.billing}").split("---\n"),
             SHOP["g.yaml"]]
    for fmt in ("xds", "envoy-static"):
        outs = set()
        for order in (range(len(texts)), reversed(range(len(texts)))):
            d = tmp_path / f"{fmt}-{len(outs)}"
            d.mkdir()
            for i, j in enumerate(order):
                (d / f"{i}.yaml").write_text(texts[j])
            r = cli("render", d, "--format", fmt, "--now", "2026-11-26T00:00:00Z")
            assert r.exit_code == 0, r.output
            outs.add(r.stdout)
            out = tmp_path / f"{fmt}-out"
            assert cli("render", d, "--format", fmt, "-o", out, "--now", "2026-11-26T00:00:00Z").exit_code == 0
            assert cli("diff", d, "--format", fmt, "--against", out, "--now", "2026-11-26T00:00:00Z").exit_code == 0
        assert len(outs) == 1


def test_snapshots_keep_the_identity_rule_the_server_relies_on(tmp_path):
    """xdsapi.Snapshot: an unchanged node hands back the very same, unmutated objects."""
    from meshforge.synthetic import write_sandbox

    d = make_specs(tmp_path, services=40, sandboxes=10)
    c = XdsCompiler()
    a = c.compile(model_of(d))
    before = {n: {t: dict(v) for t, v in a.resources(n).items()} for n in a.nodes}
    b = c.compile(model_of(d))
    assert a.settings == b.settings
    for n in a.nodes:
        assert a.nodes[n] is b.nodes[n]
        for t in (ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE):
            assert a.resources(n)[t] is b.resources(n)[t]
    write_sandbox(d / "sandboxes", 0, random.Random(5), 40, variant=1)
    c.compile(model_of(d))
    assert {n: {t: dict(v) for t, v in a.resources(n).items()} for n in a.nodes} == before  # never mutated


def test_every_set_of_resources_carries_its_version(tmp_path):
    """Each per-type mapping a node is given is a ResourceSet, on every node kind and listener shape, so the server
    hashes a scope's set once however many streams it has, and the version is the content's (version_of)."""
    from meshforge.xdsapi import ResourceSet, version_of

    model, _ = compile_paths([str(Path(__file__).resolve().parents[1] / "golden" / "laptops" / "input")], NOW)
    snap = XdsCompiler().compile(model)
    shapes = [{}, {"transparent": True}, {"host": "127.0.0.1", "port": 15999}, {"accept": ("127.0.0.1", 15443)}]
    for node in [*snap.nodes, "nobody.nowhere"]:
        for shape in shapes:
            for t, res in snap.resources(node, **shape).items():
                assert type(res) is ResourceSet, (node, shape, t)
                assert res.version == version_of(dict(res))


EDGE_SPECS = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging, namespace: shop}
spec:
  edge: {service: web, hosts: [shop.example.com], previewDomain: preview.example.com}
  services:
  - {name: web, ports: [{name: http, port: 80}], dependsOn: [cart]}
  - {name: cart, ports: [{name: http, port: 80}], dependsOn: []}
  - {name: pay, ports: [{name: http, port: 80}], dependsOn: []}
"""


def test_edge_node_has_a_preview_host_per_key_and_is_rebuilt_only_when_keys_or_its_service_change(write):
    from meshforge.xdsapi import EDGE_NODE

    d = write({"baseline.yaml": EDGE_SPECS, "a.yaml": sandbox("cart-pr-1", ("cart", "cart-v2"))})
    c = XdsCompiler()
    first = c.compile(model_of(d))
    edge = first.nodes[EDGE_NODE]
    rc = route_pb2.RouteConfiguration.FromString(edge.routes[naming.EDGE_ROUTE_CONFIG].body)
    assert [list(vh.domains) for vh in rc.virtual_hosts] == [
        ["shop.example.com"], ["cart-pr-1.preview.example.com"], ["*.preview.example.com"], ["*"]]
    assert set(edge.clusters) == {"outbound|80||web.shop.svc.cluster.local"}
    listener = first.resources(EDGE_NODE, 8443, "10.0.0.1")
    assert {r.name for r in listener["type.googleapis.com/envoy.config.listener.v3.Listener"].values()} == \
        {naming.EDGE_LISTENER}
    # another key's fork moves: same keys, same edge service -> the very same edge configuration
    (d / "a.yaml").write_text(sandbox("cart-pr-1", ("cart", "cart-v3")))
    assert c.compile(model_of(d)).nodes[EDGE_NODE] is edge
    # a new key: its preview host appears; a fork of the edge service: its cluster appears
    (d / "b.yaml").write_text(sandbox("web-pr-2", ("web", "web-v2")))
    third = c.compile(model_of(d)).nodes[EDGE_NODE]
    rc = route_pb2.RouteConfiguration.FromString(third.routes[naming.EDGE_ROUTE_CONFIG].body)
    assert [vh.domains[0] for vh in rc.virtual_hosts] == [
        "shop.example.com", "cart-pr-1.preview.example.com", "web-pr-2.preview.example.com", "*.preview.example.com",
        "*"]
    assert "outbound|80|web-pr-2|web.shop.svc.cluster.local" in third.clusters
    assert XdsCompiler().compile(model_of(d)).resources(EDGE_NODE) == c.compile(model_of(d)).resources(EDGE_NODE)


def test_changes_after_incremental_resolution_take_the_fast_path_and_equal_a_fresh_compile(tmp_path):
    """With a Workspace (as serve runs it), unchanged services are the very same objects, so the compiler
    looks only at the keys whose forks changed; every snapshot still equals a fresh compiler's."""
    from datetime import timedelta

    from meshforge.pipeline import Workspace
    from meshforge.synthetic import write_sandbox

    d = make_specs(tmp_path, services=60, sandboxes=40)
    (d / "edge.yaml").write_text("apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: e, namespace: "
                                 "bench}\nspec:\n  edge: {service: svc-0001, previewDomain: p.example.com}\n")
    (d / "group.yaml").write_text("apiVersion: meshforge.dev/v1alpha1\nkind: RouteGroup\nmetadata: {name: g}\n"
                                  "spec:\n  match: {sandboxes: [pr-0001, pr-0002]}\n")
    ws = Workspace([str(d)])
    c = XdsCompiler()
    model, _ = ws.compile(NOW)
    prev = c.compile(model)
    rng = random.Random(4)
    steps = [lambda: write_sandbox(d / "sandboxes", 1, rng, 60, variant=1),  # in the route group too
             lambda: (d / "sandboxes" / "pr-0007.yaml").unlink(),
             lambda: write_sandbox(d / "sandboxes", 99, rng, 60),  # a new key
             lambda: None]
    for i, step in enumerate(steps):
        step()
        model, diags = ws.compile(NOW + timedelta(minutes=i))
        assert model is not None, diags.items
        fast = model.services is c._services
        snap = c.compile(model)
        assert fast, i
        fresh = XdsCompiler().compile(model)
        assert set(snap.nodes) == set(fresh.nodes)
        for n in snap.nodes:
            assert snap.resources(n) == fresh.resources(n), (i, n)
        untouched = [n for n in snap.nodes if snap.nodes[n] is prev.nodes.get(n)]
        assert len(untouched) > len(snap.nodes) // 2, i  # most nodes keep their very objects
        prev = snap


def test_a_baseline_edit_rebuilds_the_services_it_touches_and_equals_a_fresh_compile(tmp_path):
    """A Baseline file changed alone (as serve's watcher names it): resolution says which services differ, and
    the compiler rebuilds those and the groups that hold them, moves the nodes whose scope changed, and gives
    what a fresh compiler gives. Edits to one service: labels (no routing change), a dependency added (its
    node changes group, and a line inserted moves every later service of the file, which changes no bytes), no
    longer routable (it leaves every scope), routable again, removed, back, its dependencies dropped (its node
    is told every service), and a new service."""
    from meshforge.pipeline import Workspace

    d = make_specs(tmp_path, services=300, sandboxes=100)
    path = d / "baseline-001.yaml"
    original = path.read_text()
    ws = Workspace([str(d)])
    model, _ = ws.compile(NOW)
    called = {dep.service for svc in model.services for dep in svc.depends_on or ()}
    forked = {f.service for kr in model.keys for f in kr.forks}
    blocks = ["  - name: svc-" + b + "\n" for b in original.rstrip("\n").split("\n  - name: svc-")[1:]]
    block = next(b for b in blocks if f"{b.split()[2]}.bench" not in called | forked)  # alone: may go away
    name = block.split()[2]
    new = block.replace(name, "svc-new").replace("dependsOn:", "dependsOn:\n    - " + name, 1)
    edits = [original.replace(block, block.replace("version: v1", "version: v2")),
             original.replace(block, block.replace("dependsOn:", "dependsOn:\n    - svc-0000", 1)),
             original.replace(block, block.replace("name: http\n", "name: tcp\n").replace("name: grpc\n", "name: tcp\n")),
             original,
             original.replace(block, ""),
             original,
             original.replace(block, block[:block.index("    dependsOn:")]),
             original.replace(block, block + new)]
    c = XdsCompiler()
    c.compile(model)
    for i, text in enumerate(edits):
        path.write_text(text)
        model, diags = ws.compile(NOW, [str(path)])
        assert model is not None, (i, diags.errors()[:1])
        assert model.change.service_ids is not None and len(model.change.service_ids) <= 100, i  # the file's
        services, groups = c.stats["services_rebuilt"], c.stats["groups_rebuilt"]
        snap = c.compile(model)
        assert c.stats["services_rebuilt"] - services <= 2, i  # the edited service (and the new one)
        told_all = sum(1 for svc in model.services if svc.depends_on is None)
        assert c.stats["groups_rebuilt"] - groups <= 20 + told_all, i  # its callers' groups, not the mesh's
        assert c.verify(model, snap) == [], i


def test_a_transparent_sidecar_gets_the_same_routes_with_a_passthrough_catch_all(tmp_path):
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.listener.v3 import listener_pb2

    from meshforge.xdsapi import LISTENER_TYPE

    model = model_of(make_specs(tmp_path))
    snap = XdsCompiler().compile(model)
    node = next(iter(snap.nodes))
    plain, clear = snap.resources(node), snap.resources(node, transparent=True)
    routes = route_pb2.RouteConfiguration.FromString(clear[ROUTE_TYPE][naming.TRANSPARENT_ROUTE_CONFIG].body)
    base = route_pb2.RouteConfiguration.FromString(plain[ROUTE_TYPE][naming.ROUTE_CONFIG].body)
    assert routes.SerializeToString(deterministic=True) == clear[ROUTE_TYPE][naming.TRANSPARENT_ROUTE_CONFIG].body
    assert list(routes.virtual_hosts)[:-1] == list(base.virtual_hosts)[:-1]  # every service's routes as they are
    assert base.virtual_hosts[-1].routes[0].direct_response.status == 404
    assert routes.virtual_hosts[-1].domains == ["*"]
    assert routes.virtual_hosts[-1].routes[0].route.cluster == naming.PASSTHROUGH_CLUSTER
    passthrough = cluster_pb2.Cluster.FromString(clear[CLUSTER_TYPE][naming.PASSTHROUGH_CLUSTER].body)
    assert passthrough.type == cluster_pb2.Cluster.ORIGINAL_DST
    assert set(clear[CLUSTER_TYPE]) == set(plain[CLUSTER_TYPE]) | {naming.PASSTHROUGH_CLUSTER}
    (lis,) = clear[LISTENER_TYPE].values()
    listener = listener_pb2.Listener.FromString(lis.body)
    assert listener.listener_filters[0].name == "envoy.filters.listener.original_dst"
    ports = {c.filter_chain_match.destination_port.value for c in listener.filter_chains}
    assert ports == {p.number for s in model.services for p in s.routable_ports} | {15001}
    assert listener.default_filter_chain.filters[0].name == "envoy.filters.network.tcp_proxy"
    # asked twice: the very same dicts (the server's "unchanged" rule compares by identity)
    again = snap.resources(node, transparent=True)
    assert again[ROUTE_TYPE] is clear[ROUTE_TYPE] and again[CLUSTER_TYPE] is clear[CLUSTER_TYPE]
