"""backends: the table drives the CLI and the golden tests; every destination kind is expressed or refused."""

from __future__ import annotations

import pytest

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
    Model,
    Port,
    Routing,
    Sandbox,
    Service,
    SubsetDestination,
    UserObject,
    Workload,
    WorkloadDestination,
)

from .conftest import BASELINE

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
}
WEB = Service("web", "shop", "cluster.local", (Port("http", 80, "HTTP"),),
              workloads=(Workload("Deployment", "web", (("app", "web"), ("version", "v1"))),))


def model_with(kind: type) -> Model:
    """A lowered model (what backends are given) with one fork of this kind."""
    fork = Fork("web.shop", "pr", SAMPLE[kind], Span("s.yaml", 3, 5))
    return lower(Model(Routing(), (WEB,), (KeyRoutes("pr", "Sandbox", "pr", (fork,)),),
                       (Sandbox("pr", "shop", "pr", (), None, False, (fork,)),)))


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
