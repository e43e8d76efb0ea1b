"""backends: the table drives the CLI and the golden tests; every destination kind is expressed or refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshforge import backends
from meshforge.diagnostics import Diagnostics, Span
from meshforge.lower import lower
from meshforge.model import (
    DESTINATION_KINDS,
    Endpoint,
    EndpointsDestination,
    Fork,
    HostDestination,
    ImageChange,
    KeyRoutes,
    LocalDestination,
    Model,
    Port,
    Routing,
    Sandbox,
    Service,
    SubsetDestination,
    Tunnel,
    UserObject,
    Workload,
    WorkloadDestination,
)
from meshforge.pipeline import PASSES

from .conftest import BASELINE
from .specs import sandbox

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
              "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                  "metadata": {"labels": {"app": "web", "version": "v1"}},
                  "spec": {"containers": [{"name": "web", "image": "example/web:1"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
SAMPLE = {
    HostDestination: HostDestination("web-pr.shop.svc.cluster.local"),
    EndpointsDestination: EndpointsDestination((Endpoint("10.0.0.7", 8080),)),
    SubsetDestination: SubsetDestination((("version", "pr"),)),
    WorkloadDestination: WorkloadDestination((ImageChange(None, "example/web:pr"),), (), 1,
                                             UserObject.of(DEPLOYMENT, "web", "shop", Span()),
                                             UserObject.of(SERVICE, "web", "shop", Span())),
    LocalDestination: LocalDestination("alice@example.com"),
}
WEB = Service("web", "shop", "cluster.local", (Port("http", 80, "HTTP"),),
              workloads=(Workload("Deployment", "web", (("app", "web"), ("version", "v1"))),))


def model_with(kind: type) -> Model:
    """A lowered model (what backends are given) with one fork of this kind."""
    fork = Fork("web.shop", "pr", SAMPLE[kind], Span("s.yaml", 3, 5))
    return lower(Model(Routing(), (WEB,), (KeyRoutes("pr", "Sandbox", "pr", (fork,)),),
                       (Sandbox("pr", "shop", "pr", (), None, False, (fork,)),),
                       tunnel=Tunnel("meshforge-tunnel.meshforge.svc.cluster.local", 15080)), PASSES)


def test_every_destination_kind_has_a_sample():
    assert set(SAMPLE) == set(DESTINATION_KINDS), "a new destination kind: add it here and to every backend"


@pytest.mark.parametrize("name", list(backends.BACKENDS))
@pytest.mark.parametrize("kind", DESTINATION_KINDS, ids=lambda k: k.kind)
def test_each_backend_renders_what_it_declares_and_refuses_the_rest(name, kind):
    backend = backends.get(name)
    diags = Diagnostics()
    files = backends.render(model_with(kind), name, diags)
    if kind in backend.destinations:
        assert not diags.has_errors, diags.items
        # the kubernetes backend renders only the objects of workload forks; the others route every kind
        assert bool(files) == (name != "kubernetes" or kind is WorkloadDestination)
    else:
        assert files == {}
        assert [(d.code, d.span.line) for d in diags.items] == [("MF301", 3)]
        assert backend.cannot[kind].hint == diags.items[0].hint


def test_unknown_backend_gets_a_near_miss_hint():
    with pytest.raises(KeyError, match='did you mean "istio"'):
        backends.get("isito")


def test_options_go_only_to_the_backends_that_take_them():
    seen = {}

    def fake(model, diags, **options):
        seen.update(options)
        return {}

    b = backends.Backend("fake", "Fake", "", fake, frozenset(DESTINATION_KINDS), options=(backends.ADMIN_PORT,))
    b.render(model_with(HostDestination), Diagnostics(), admin_port=9, outbound_port=1)
    assert seen == {"admin_port": 9}
    b.render(model_with(HostDestination), Diagnostics())
    assert seen == {"admin_port": backends.ADMIN_PORT.default}


def test_render_format_choices_and_help_come_from_the_table(cli, write):
    result = cli("render", "--help")
    for b in backends.BACKENDS.values():
        assert b.name in result.output
    d = write({"b.yaml": BASELINE})
    bad = cli("render", str(d), "--format", "nope")
    assert bad.exit_code == 2 and all(n in bad.output for n in backends.BACKENDS)
    wrong = cli("render", str(d), "--format", "istio", "--admin-port", "9901")
    assert wrong.exit_code == 2 and "--admin-port does not apply to --format istio" in wrong.output
    ok = cli("render", str(d), "--format", "envoy-static", "--admin-port", "9901")
    assert ok.exit_code == 0 and "port_value: 9901" in ok.output


# -- names that cannot collide (issue 21): with each other, or with any input object ---------------------

def _manifests(*names: str, namespace: str = "shop") -> str:
    out = []
    for n in names:
        out.append(f"""\
apiVersion: v1
kind: Service
metadata: {{name: "{n}", namespace: {namespace}, annotations: {{meshforge.dev/depends-on: ""}}}}
spec:
  selector: {{app: "{n}"}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: "{n}", namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: "{n}"}}}}
  template:
    metadata: {{labels: {{app: "{n}"}}}}
    spec: {{containers: [{{name: app, image: example/{n}:1}}]}}
""")
    return "---\n".join(out)


def _identities(files: dict[str, str]) -> list[tuple]:
    import yaml

    out = []
    for text in files.values():
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and "kind" in doc and "metadata" in doc:
                api = doc["apiVersion"]
                out.append((api.rsplit("/", 1)[0] if "/" in api else "", doc["kind"], doc["metadata"]["namespace"],
                            doc["metadata"]["name"]))
    return out


def _compile(write, files: dict[str, str]):
    from meshforge.pipeline import compile_paths

    model, diags = compile_paths([str(write(files))])
    assert model is not None, [d.to_text() for d in diags.errors()]
    return model


def test_a_workload_fork_never_takes_the_name_of_a_baseline_object(write):
    model = _compile(write, {"k8s.yaml": _manifests("cart", "cart-canary"),
                             "s.yaml": sandbox("canary", ("cart", {"workload": {"images": [{"image": "example/cart:pr"}]}}))})
    for name in ("kubernetes", "istio", "gateway-api"):
        diags = Diagnostics()
        files = backends.render(model, name, diags)
        assert not diags.has_errors, diags.items
        assert not set(_identities(files)) & model.inputs, name
    istio = backends.render(model, "istio", Diagnostics())
    assert "cart-canary.shop.svc" not in istio["shop/virtualservice-meshforge-cart.yaml"]  # not the real cart-canary


def test_two_sandboxes_whose_names_run_together_get_objects_of_their_own(write, tmp_path, cli):
    model = _compile(write, {"k8s.yaml": _manifests("cart", "cart-x"),
                             "a.yaml": sandbox("x-y", ("cart", {"workload": {"images": [{"image": "example/cart:a"}]}})),
                             "b.yaml": sandbox("y", ("cart-x", {"workload": {"images": [{"image": "example/cart:b"}]}}))})
    files = backends.render(model, "kubernetes", Diagnostics())
    assert len(files) == 4 and len(set(_identities(files))) == 4  # two Deployments, two Services
    ep = _compile(write, {"k8s.yaml": _manifests("cart", "cart-x"),
                          "a.yaml": sandbox("x-y", ("cart", {"endpoints": [{"address": "10.0.0.1", "port": 80}]})),
                          "b.yaml": sandbox("y", ("cart-x", {"endpoints": [{"address": "10.0.0.2", "port": 80}]}))})
    istio = backends.render(ep, "istio", Diagnostics())
    entries = sorted(i[3] for i in _identities(istio) if i[1] == "ServiceEntry")
    assert entries == ["meshforge-cart-x.y", "meshforge-cart.x-y"]
    assert len(backends.render(ep, "gateway-api", Diagnostics())) == len(set(_identities(
        backends.render(ep, "gateway-api", Diagnostics()))))


def test_the_edge_never_takes_a_forked_service_s_virtual_service(write):
    edge = ("apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: e, namespace: shop}\n"
            "spec: {edge: {service: edge, hosts: [shop.example.com], previewDomain: preview.example.com}}\n")
    model = _compile(write, {"k8s.yaml": _manifests("edge", "edge-preview-pr1"), "e.yaml": edge,
                             "a.yaml": sandbox("pr1", ("edge", "edge-pr1.shop.svc.cluster.local")),
                             "b.yaml": sandbox("pr2", ("edge-preview-pr1", "x.shop.svc.cluster.local"))})
    for name in ("istio", "gateway-api"):
        diags = Diagnostics()
        files = backends.render(model, name, diags)
        assert not diags.has_errors, diags.items
        ids = _identities(files)
        assert len(ids) == len(set(ids)), name
    istio = backends.render(model, "istio", Diagnostics())
    assert "edge-preview-pr1.shop.svc.cluster.local" in istio["shop/virtualservice-meshforge-edge-preview-pr1.yaml"]


def test_a_generated_object_named_like_an_input_object_is_an_error_and_nothing_is_written(write, cli, tmp_path):
    from meshforge.lower import fork_name

    taken = fork_name("cart", "pr-1")  # someone named a real Service so
    d = write({"k8s.yaml": _manifests("cart", taken),
               "s.yaml": sandbox("pr-1", ("cart", {"workload": {"images": [{"image": "example/cart:pr"}]}}))})
    out = tmp_path / "out"
    r = cli("render", d, "--format", "kubernetes", "-o", out)
    assert r.exit_code == 1 and "error[MF308]" in r.output and f"Service shop/{taken}" in r.output
    assert not out.exists()


def test_two_files_with_one_path_are_an_internal_error_naming_both_inputs():
    from meshforge.emit.objects import Rendered

    model = model_with(HostDestination)
    diags = Diagnostics()
    twice = [Rendered("a.yaml", "x", ("", "Service", "shop", "a"), Span("one.yaml", 1, 1)),
             Rendered("a.yaml", "y", ("", "Service", "shop", "b"), Span("two.yaml", 2, 2))]
    assert not backends.unique(twice, model, backends.get("istio"), diags)
    [d] = diags.items
    assert d.code == "MF309" and "one.yaml:1:1" in d.message and d.span.file == "two.yaml"


_WORD = st.sampled_from(["a", "b", "edge", "preview"])  # few words: names that run together are found
_NAME = st.lists(_WORD, min_size=1, max_size=3).map("-".join)
_KIND = st.sampled_from(["workload", "workload", "endpoints", "host"])


@st.composite
def _meshes(draw):
    """Services and sandboxes (name, which service, fork kind), with pairs whose names run together:
    service `a` + sandbox `b-c` beside service `a-b` + sandbox `c`, the shape of a collision."""
    services = draw(st.lists(_NAME, min_size=1, max_size=3, unique=True))
    sandboxes = draw(st.lists(st.tuples(_NAME, st.integers(0, 9), _KIND), min_size=1, max_size=4,
                              unique_by=lambda t: t[0]))
    words = draw(st.lists(_WORD, min_size=3, max_size=4))
    cut = draw(st.integers(1, len(words) - 2))
    twin_a, twin_b = "-".join(words[:cut]), "-".join(words[:cut + 1])
    for svc in (twin_a, twin_b):
        if svc not in services:
            services.append(svc)
    kind = draw(_KIND)
    taken = {n for n, _, _ in sandboxes}
    for svc, name in ((twin_a, "-".join(words[cut:])), (twin_b, "-".join(words[cut + 1:]))):
        if name not in taken:
            taken.add(name)
            sandboxes.append((name, services.index(svc), kind))
    return services, sandboxes


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(_meshes())
def test_every_backend_renders_one_object_per_identity_and_none_of_an_input(mesh):
    services, sandboxes = mesh
    import tempfile
    from pathlib import Path

    from meshforge.pipeline import compile_paths

    with tempfile.TemporaryDirectory() as d:
        edge = ("apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: e, namespace: shop}\n"
                f"spec: {{edge: {{service: '{services[0]}', hosts: [shop.example.com], previewDomain: p.example.com}}}}\n")
        (Path(d) / "k8s.yaml").write_text(_manifests(*services) + "---\n" + edge)
        for i, (name, which, kind) in enumerate(sandboxes):
            svc = services[which % len(services)]
            to = {"workload": {"workload": {"images": [{"image": "example/x:pr"}]}},
                  "endpoints": {"endpoints": [{"address": f"10.0.0.{i + 1}", "port": 80}]},
                  "host": f"{svc}-{name}.shop.svc.cluster.local"}[kind]
            (Path(d) / f"s{i}.yaml").write_text(sandbox(name, (svc, to)))
        model, diags = compile_paths([d])
        assert model is not None, [x.to_text() for x in diags.errors()]
        for backend in backends.BACKENDS:
            bd = Diagnostics()
            files = backends.render(model, backend, bd)
            assert not bd.has_errors, (backend, [x.to_text() for x in bd.errors()])
            ids = _identities(files)
            assert len(ids) == len(set(ids)), backend
            assert not set(ids) & model.inputs, backend
