"""pipeline: one compile path; the Workspace re-parses only changed files; lowering passes run."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshforge.diagnostics import Diagnostics
from meshforge.model import HostDestination
from meshforge.pipeline import Workspace, compile_documents, compile_paths
from meshforge.source import load_paths

from .conftest import BASELINE, NOW
from .specs import route_group, sandbox


def test_documents_and_paths_compile_to_the_same_model(write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c1.shop.svc.cluster.local"))})
    diags = Diagnostics()
    from_docs = compile_documents(load_paths([str(d)], diags), diags, NOW)
    from_paths, _ = compile_paths([str(d)], NOW)
    assert from_docs == from_paths and from_paths is not None


def test_workspace_reparses_only_changed_files(write):
    d = write({"b.yaml": BASELINE, "s1.yaml": sandbox("pr-1", ("cartservice", "c1.x")),
               "s2.yaml": sandbox("pr-2", ("checkout", "c2.x"))})
    ws = Workspace([str(d)])
    first, _ = ws.compile(NOW)
    assert ws.files_parsed == 3
    again, _ = ws.compile(NOW)
    assert ws.files_parsed == 3 and again == first
    (d / "s2.yaml").write_text(sandbox("pr-2", ("checkout", "c3.x")))
    changed, _ = ws.compile(NOW)
    assert ws.files_parsed == 4
    assert changed.key_by_name["pr-2"].forks[0].destination == HostDestination("c3.x")
    os.utime(d / "s1.yaml")  # touched, same bytes: re-read, not re-parsed
    ws.compile(NOW)
    assert ws.files_parsed == 4
    (d / "s1.yaml").unlink()
    gone, _ = ws.compile(NOW)
    assert "pr-1" not in gone.key_by_name


def test_invalid_specs_give_no_model(write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("nope", "c.x"))})
    model, diags = Workspace([str(d)]).compile(NOW)
    assert model is None and [x.code for x in diags.errors()] == ["MF201"]


def test_lowering_passes_run_in_order_after_resolution(write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c1.x"))})
    seen = []

    def first(model):
        seen.append("first")
        return dataclasses.replace(model, keys=())

    def second(model):
        seen.append(("second", len(model.keys)))
        return model

    model, _ = Workspace([str(d)], passes=(first, second)).compile(NOW)
    assert seen == ["first", ("second", 0)] and model.keys == ()
    bad = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("nope", "c1.x"))}, sub="bad")
    seen.clear()
    assert Workspace([str(bad)], passes=(first,)).compile(NOW)[0] is None and seen == []  # never on invalid input


def test_incremental_resolution_gives_what_a_fresh_compile_gives(tmp_path, monkeypatch):
    """The Workspace reuses services and sandboxes whose declarations did not change; after every kind of
    change its model and diagnostics equal a fresh compile's, byte for byte."""
    import random
    from datetime import timedelta

    from meshforge.model import to_json
    from meshforge.synthetic import generate, write_sandbox

    d = generate(tmp_path / "specs", 40, 30, deps=2)
    ws = Workspace([str(d)])
    rng = random.Random(5)
    (d / "sandboxes" / "expiring.yaml").write_text(
        "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: expiring, namespace: bench}\n"
        "spec:\n  expiresAt: \"2026-11-26T01:00:00Z\"\n  forks: [{service: svc-0001, to: {host: x.bench.svc.cluster.local}}]\n")
    steps = [
        lambda: write_sandbox(d / "sandboxes", 3, rng, 40, variant=1),  # a sandbox edited
        lambda: (d / "sandboxes" / "pr-0004.yaml").unlink(),  # one deleted
        lambda: (d / "baseline-000.yaml").write_text((d / "baseline-000.yaml").read_text().replace(
            "svc-0002", "svc-0002x")),  # a service renamed: forks of svc-0002 become errors
        lambda: (d / "baseline-000.yaml").write_text((d / "baseline-000.yaml").read_text().replace(
            "svc-0002x", "svc-0002")),  # and back
        lambda: None,  # nothing changed, but the clock moves past an expiry
    ]
    from meshforge import resolve

    calls = []
    real = resolve._sandbox
    monkeypatch.setattr(resolve, "_sandbox", lambda sd, *a: calls.append(sd.name) or real(sd, *a))
    ws.compile(NOW)
    now = NOW
    for i, step in enumerate(steps):
        calls.clear()
        step()
        if i == len(steps) - 1:
            now = NOW + timedelta(hours=2)
        got, got_diags = ws.compile(now)
        fresh, fresh_diags = Workspace([str(d)]).compile(now)
        assert [x.to_text() for x in got_diags.items] == [x.to_text() for x in fresh_diags.items], i
        assert (got is None) == (fresh is None)
        if got is not None:
            assert to_json(got) == to_json(fresh), i
        if i == 0:
            assert calls[0] == "pr-0003" and len(calls) == 1 + 31  # the edited one, then the fresh compile's 31
    assert calls[0] == "expiring" and len(calls) == 1 + 30  # only the sandbox whose expiry state changed
    assert any(s.name == "expiring" and s.expired for s in got.sandboxes)


# -- a change compiled on its own gives what compiling everything gives ------------------------------

ORDERS = """\
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  selector: {app: orders}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec: {containers: [{name: orders, image: example/orders:v1}]}
"""

_PEM = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPtETt4g7TFkGODedsMIc2hZ0LtAl\n"
        "UEi/QzOR03S8IdGQmSCazMTIoiTIQ6+k9MaKCQ0E2l6Yidri+O786Co3QA==\n-----END PUBLIC KEY-----\n")
_EXTRA = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: extra, namespace: ops}
spec:
  services:
  - name: %s
    ports: [{name: %s, port: 9000}]%s
"""
_FORKS = {"cart": "  - service: cartservice\n    to: {host: cart-%s.example}\n",
          "checkout": "  - service: checkout\n    to: {endpoints: [{address: 10.0.0.%d, port: 8080}]}\n",
          "orders": "  - service: orders\n    to: {workload: {images: [{image: 'example/orders:%s'}]}}\n",
          "unknown": "  - service: nope\n    to: {host: x.example}\n",
          "laptop": "  - service: cartservice\n    to: {local: {owner: dev%d@example.com}}\n"}


@st.composite
def _sandbox_text(draw) -> str:
    # mostly valid (so that most steps compile and the next can start from them), sometimes not
    name = draw(st.sampled_from(["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s0"]))
    lines = ["apiVersion: meshforge.dev/v1alpha1", "kind: Sandbox",
             f"metadata: {{name: {name}, namespace: shop, labels: {{team: {draw(st.sampled_from('ab'))}}}}}",
             "spec:"]
    key = draw(st.sampled_from([None, None, None, None, "k1", "k2", "Bad_Key"]))
    if key:
        lines.append(f"  routingKey: {key}")
    expiry = draw(st.sampled_from([None, "2026-11-25T00:00:00Z", "2026-11-26T00:20:00Z", "2026-11-26T01:00:00Z"]))
    if expiry:
        lines.append(f'  expiresAt: "{expiry}"')
    not_before = draw(st.sampled_from([None, None, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"]))
    if not_before:
        lines.append(f'  notBefore: "{not_before}"')
    lines.append("  forks:")
    text = "\n".join(lines) + "\n"
    v = draw(st.integers(1, 9))
    forks = ["cart", "cart", "checkout", "checkout", "orders", "cart", "checkout", "unknown", "laptop"]
    for fork in draw(st.lists(st.sampled_from(forks), min_size=1, max_size=3, unique=True)):
        text += _FORKS[fork] % (v,) if "%" in _FORKS[fork] else _FORKS[fork]
    return text


_STEP = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 4), _sandbox_text()),
    st.tuples(st.just("write"), st.integers(0, 4), _sandbox_text()),
    st.tuples(st.just("write"), st.integers(0, 4), _sandbox_text()),
    st.tuples(st.just("write"), st.integers(0, 4), st.just("kind: [broken\n")),
    st.tuples(st.just("delete"), st.integers(0, 4), st.none()),
    st.tuples(st.just("tick"), st.integers(0, 40), st.none()),  # minutes pass: sandboxes may expire
    st.tuples(st.just("hidden"), st.integers(0, 1), _sandbox_text()),  # under .git/: never an input
    st.tuples(st.just("groups"), st.integers(0, 2), st.none()),  # a route group file changes: the full way
    st.tuples(st.just("baseline"), st.integers(0, 11), st.none()),  # services (or the tunnel) change under the sandboxes
    st.tuples(st.just("baseline"), st.integers(0, 11), st.none()),
    st.tuples(st.just("extra"), st.integers(0, 5), st.none()),  # a second Baseline file comes, changes, goes
    st.tuples(st.just("extra"), st.integers(0, 5), st.none()),
    st.tuples(st.just("orders"), st.integers(0, 1), st.none()),  # the Deployment workload forks copy changes
)


def _fingerprint(result) -> tuple:
    nodes = {}
    if result.snapshot is not None:
        for node, cfg in result.snapshot.nodes.items():
            nodes[node] = [{n: r.version for n, r in part.items()} for part in (cfg.routes, cfg.clusters, cfg.endpoints)]
            nodes[node].append(cfg.local_forks)  # the tunnel node: who may attach
    return result.errors, result.warnings, result.next_expiry, nodes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, min_size=1, max_size=12))
def test_a_change_compiled_alone_gives_what_compiling_everything_gives(tmp_path_factory, steps):
    """Each step changes files (or only the clock); the serve compile told which files changed (and the
    workspace told the same) must give exactly what a fresh compile of every file gives: the same model,
    diagnostics, snapshot versions and next expiry. Conflicting names and keys, invalid keys, unknown
    services, workload forks, expiry, route groups by label and by name, broken YAML and hidden
    directories are all in play, and an edge with a preview host per key, forks to laptops and the tunnel node;
    the Baseline changes too (a port no longer routable or newly routable, a service added, labels or
    dependencies changed, the tunnel gone or moved), and a second Baseline comes, changes (a service defined
    twice, the routing header, the cluster domain) and goes, under sandboxes kept across it."""
    from meshforge.session import Session

    d = tmp_path_factory.mktemp("specs")
    (d / "sandboxes").mkdir()
    (d / ".git").mkdir()
    edge = "  edge: {service: frontend, hosts: [shop.example.test], previewDomain: preview.example.test}\n" \
        "  tunnel: {host: meshforge-tunnel.infra, port: 15080}\n"
    baseline = BASELINE.replace("spec:\n", "spec:\n" + edge, 1) + "  - name: orders\n    dependsOn: [checkout]\n"
    baselines = [baseline,
                 baseline.replace("name: http-api", "name: tcp-api"),  # checkout no longer routable (MF202)
                 baseline + "  - name: nope\n    ports:\n    - {name: http, port: 80}\n",  # forks of nope resolve
                 baseline.replace("version: v1", "version: v2"),  # cartservice's labels change
                 baseline.replace("  tunnel: {host: meshforge-tunnel.infra, port: 15080}\n", ""),  # MF230
                 baseline.replace("port: 15080}", "port: 15081}"),  # every fork to a laptop goes elsewhere
                 baseline.replace("previewDomain: preview.example.test}", "previewDomain: preview.example.test, "
                                  f"previewAuth: {{mode: signed, publicKeys: [{json.dumps(_PEM)}]}}}}"),  # signed links
                 baseline.replace("dependsOn: [cartservice, checkout]", "dependsOn: [cartservice]"),  # a scope shrinks
                 baseline.replace("    dependsOn: [cartservice, checkout]\n", ""),  # frontend told every service
                 baseline.replace("tcp-redis", "http-redis"),  # redis-cart routable: cartservice's scope grows
                 baseline.replace("  - name: checkout\n", "  - name: checkout\n    # one line more\n"),  # lines move
                 baseline.replace("name: http-api", "name: tcp-api")  # MF202 names the port's new line
                 .replace("  - name: checkout\n", "  - name: checkout\n    # one line more\n")]
    extras = [None,
              _EXTRA % ("audit", "http", "\n    dependsOn: [frontend.shop, nope.shop]"),  # nope: with baselines[2]
              _EXTRA % ("audit", "http", "\n  - name: nope\n    namespace: shop\n    ports: [{name: http, port: 81}]"),
              _EXTRA % ("audit", "grpc", ""),  # told every service
              _EXTRA.replace("spec:\n", "spec:\n  routing: {header: x-team-key}\n") % ("audit", "http", ""),  # carriers
              _EXTRA.replace("spec:\n", "spec:\n  clusterDomain: corp.example\n") % ("audit", "http", "")]
    (d / "baseline.yaml").write_text(baseline)
    (d / "orders.yaml").write_text(ORDERS)
    groups = [route_group("g-team", labels="{team: a}", key="k2"), route_group("g-two", sandboxes=["s0", "s2"]),
              route_group("g-typo", sandboxes=["s5x"])]  # MF207, whose hint names s5 while it exists
    (d / "groups.yaml").write_text(groups[0])
    paths = [str(d)]
    now = NOW
    session, ws = Session(paths), Workspace(paths)
    session.compile(now)
    ws.compile(now)

    def put(path, text):
        tmp = path.with_name(path.name + ".tmp~")
        tmp.write_text(text)
        os.replace(tmp, path)

    for op, i, text in steps:
        changed: list[str] = []
        if op == "write":
            put(d / "sandboxes" / f"sb{i}.yaml", text)
            changed.append(str(d / "sandboxes" / f"sb{i}.yaml"))
        elif op == "delete":
            (d / "sandboxes" / f"sb{i}.yaml").unlink(missing_ok=True)
            changed.append(str(d / "sandboxes" / f"sb{i}.yaml"))
        elif op == "tick":
            now += timedelta(minutes=i)
        elif op == "hidden":
            put(d / ".git" / "x.yaml", text)
            changed.append(str(d / ".git" / "x.yaml"))
        elif op == "groups":
            put(d / "groups.yaml", groups[i])
            changed.append(str(d / "groups.yaml"))
        elif op == "baseline":
            put(d / "baseline.yaml", baselines[i])
            changed.append(str(d / "baseline.yaml"))
        elif op == "extra":
            if extras[i] is None:
                (d / "extra.yaml").unlink(missing_ok=True)
            else:
                put(d / "extra.yaml", extras[i])
            changed.append(str(d / "extra.yaml"))
        else:
            put(d / "orders.yaml", ORDERS.replace("metadata: {name: orders, namespace: shop}\nspec:\n  selector: {matchL",
                                                  f"metadata: {{name: orders, namespace: shop, labels: {{tier: t{i}}}}}\n"
                                                  "spec:\n  selector: {matchL"))
            changed.append(str(d / "orders.yaml"))
        full = Session(paths).compile(now)
        assert _fingerprint(session.compile(now, changed)) == _fingerprint(full)
        assert session.verify() == []  # each stage: what it kept and updated is what it builds from scratch
        ws.compile(now, changed)
        assert ws.verify() == []


def test_a_file_changed_alone_is_the_only_file_read(write):
    d = write({"b.yaml": BASELINE, "s1.yaml": sandbox("pr-1", ("cartservice", "c1.x")),
               "s2.yaml": sandbox("pr-2", ("checkout", "c2.x"))})
    ws = Workspace([str(d)])
    ws.compile(NOW)
    (d / "s2.yaml").write_text(sandbox("pr-2", ("checkout", "c3.x")))
    (d / "s1.yaml").unlink()
    model, _ = ws.compile(NOW, [os.path.realpath(d / "s2.yaml"), os.path.realpath(d / "s1.yaml")])
    assert ws.incremental_compiles == 1 and ws.files_parsed == 4
    assert [k.key for k in model.keys] == ["pr-2"] and model.keys[0].forks[0].destination == HostDestination("c3.x")
    assert model.change.keys == {"pr-1", "pr-2"}  # what later stages look at
    (d / "b.yaml").write_text(BASELINE.replace("port: 80", "port: 81"))  # a Baseline: only it is read too
    model, _ = ws.compile(NOW, [os.path.realpath(d / "b.yaml")])
    assert ws.incremental_compiles == 2 and ws.files_parsed == 5
    assert 81 in {p.number for s in model.services for p in s.ports}
    assert model.change.services and model.change.service_ids  # what changed, by service
    assert model.change.service_ids < {s.id for s in model.services}
    (d / "orders.yaml").write_text(ORDERS)  # a Kubernetes manifest: the import reads them all, the full way
    model, _ = ws.compile(NOW, [os.path.realpath(d / "orders.yaml")])
    assert ws.incremental_compiles == 2 and model.service_by_id.get("orders.shop") is not None


def test_a_route_group_is_resolved_again_when_what_it_depends_on_changes(write):
    """Route groups are kept between compiles: one that names an unknown sandbox is resolved again on any
    sandbox change (its did-you-mean hint looks at every name); one that selects by label when a sandbox
    with those labels comes or goes."""
    d = write({"b.yaml": BASELINE, "g.yaml": route_group("g-typo", sandboxes=["s5x"]) + "---\n" +
               route_group("g-label", labels="{team: a}", key="ga")})
    ws = Workspace([str(d)])
    _, diags = ws.compile(NOW)
    assert "did you mean" not in diags.errors()[0].to_text()
    (d / "s.yaml").write_text(sandbox("s5", ("cartservice", "h.x"), labels="{team: a}"))
    _, diags = ws.compile(NOW, [os.path.realpath(d / "s.yaml")])
    assert ws.incremental_compiles == 1
    assert 'did you mean "s5"?' in diags.errors()[0].to_text()
    (d / "g.yaml").write_text(route_group("g-label", labels="{team: a}", key="ga"))
    model, _ = ws.compile(NOW, [os.path.realpath(d / "g.yaml")])
    assert [f.sandbox for f in model.key("ga").forks] == ["s5"]
    (d / "s.yaml").write_text(sandbox("s5", ("cartservice", "h.x"), labels="{team: b}"))
    model, _ = ws.compile(NOW, [os.path.realpath(d / "s.yaml")])
    assert model.key("ga") is None and ws.incremental_compiles == 3  # the route group file too


def test_sandboxes_are_resolved_again_when_a_service_they_fork_changes(write):
    """Sandboxes are kept when the services change; those whose forks found a changed service (its
    Service, or the workload manifest a workload fork copies) are resolved again, and so are those with
    a fork that found none when a service comes."""
    workload = ("apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: w, namespace: shop}\n"
                "spec:\n  forks:\n  - service: orders\n    to: {workload: {images: [{image: 'example/orders:pr'}]}}\n")
    d = write({"b.yaml": BASELINE, "orders.yaml": ORDERS, "w.yaml": workload,
               "s.yaml": sandbox("s", ("checkout", "c.x"))})
    ws = Workspace([str(d)])
    model, _ = ws.compile(NOW)
    def fork_labels(model) -> dict:
        return next(o.body for o in model.generated if o.kind == "Deployment")["metadata"]["labels"]

    assert model is not None and "tier" not in fork_labels(model)
    (d / "orders.yaml").write_text(ORDERS.replace("metadata: {name: orders, namespace: shop}\nspec:\n  selector: {matchL",
                                                  "metadata: {name: orders, namespace: shop, labels: {tier: a}}\n"
                                                  "spec:\n  selector: {matchL"))
    model, _ = ws.compile(NOW, [os.path.realpath(d / "orders.yaml")])
    assert fork_labels(model)["tier"] == "a"
    (d / "s.yaml").write_text(sandbox("s", ("extra", "c.x")))
    _, diags = ws.compile(NOW, [os.path.realpath(d / "s.yaml")])
    assert [x.code for x in diags.errors()] == ["MF201"]
    (d / "b.yaml").write_text(BASELINE + "  - name: extra\n    ports:\n    - {name: http, port: 80}\n")
    model, diags = ws.compile(NOW, [os.path.realpath(d / "b.yaml")])
    assert model is not None and model.key("s").forks[0].service == "extra.shop"
    (d / "b.yaml").write_text(BASELINE + "  - name: extra\n    ports:\n    - {name: tcp, port: 80}\n")
    model, diags = ws.compile(NOW, [os.path.realpath(d / "b.yaml")])
    assert [x.code for x in diags.errors()] == ["MF202"]


def test_a_baseline_edit_that_only_moves_lines_resolves_no_sandbox_again_unless_a_diagnostic_names_them(write):
    """Lines moved in a Baseline change positions, which a fork reads only where a diagnostic names them (the
    ports of a service that has no HTTP port, MF202): the sandboxes that fork a moved service are resolved
    again only then, and either way the result is a fresh compile's."""
    moved = "  - name: checkout\n    # one line more\n"
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("s", ("checkout", "c.x"))})
    ws = Workspace([str(d)])
    ws.compile(NOW)
    (d / "b.yaml").write_text(BASELINE.replace("  - name: checkout\n", moved))
    model, _ = ws.compile(NOW, [str(d / "b.yaml")])
    assert "checkout.shop" in model.change.service_ids and model.change.keys == frozenset()  # not resolved again
    assert ws.verify() == []
    tcp = BASELINE.replace("name: http-api", "name: tcp-api")
    for text in (tcp, tcp.replace("  - name: checkout\n", moved), tcp):
        (d / "b.yaml").write_text(text)
        _, diags = ws.compile(NOW, [str(d / "b.yaml")])
        line = next(i for i, x in enumerate(text.splitlines(), 1) if "tcp-api" in x)
        assert any(x.code == "MF202" and f"b.yaml:{line}:" in x.message for x in diags.errors()), line
        assert ws.verify() == []
