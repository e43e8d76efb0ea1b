"""lower: the passes bind; the objects are built by the builder the pipeline hands them (emit.kubernetes)."""

from __future__ import annotations

from dataclasses import replace

from meshforge.diagnostics import Span
from meshforge.emit import kubernetes
from meshforge.lower import fork_name, local_forks, lower, workload_forks
from meshforge.model import (
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
    Tunnel,
    UserObject,
    Workload,
    WorkloadDestination,
)
from meshforge.pipeline import PASSES

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-v1", "namespace": "shop"},
              "spec": {"selector": {"matchLabels": {"tier": "web"}}, "template": {
                  "metadata": {"labels": {"tier": "web", "version": "v1"}},
                  "spec": {"containers": [{"name": "web", "image": "example/web:1"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"selector": {"tier": "web", "role": "frontend"}, "ports": [{"name": "http", "port": 80}]}}
WEB = Service("web", "shop", "corp.local", (Port("http", 80, "HTTP"),),
              workloads=(Workload("Deployment", "web-v1", (("tier", "web"), ("version", "v1"))),))
ORIGIN = Span("s.yaml", 4, 5)


def model(*, expired: bool = False, local: bool = False) -> Model:
    dest = LocalDestination() if local else WorkloadDestination(
        (ImageChange(None, "example/web:pr"),), (), 2,
        UserObject.of(DEPLOYMENT, "web-v1", "shop", Span()), UserObject.of(SERVICE, "web", "shop", Span()))
    fork = Fork("web.shop", "pr-4", dest, ORIGIN)
    return Model(Routing(), (WEB,), (KeyRoutes("pr-4", "Sandbox", "pr-4", (fork,)),),
                 (Sandbox("pr-4", "shop", "pr-4", (), None, expired, (fork,)),),
                 tunnel=Tunnel("meshforge-tunnel.meshforge.svc.cluster.local", 15080))


def test_a_workload_fork_is_bound_and_its_objects_come_from_the_builder():
    seen = []

    def build(binding):
        seen.append(binding)
        return (UserObject("v1", "ConfigMap", "made-" + binding.service_name, binding.namespace, "{}", binding.origin),)

    lowered = lower(model(), (workload_forks(build),))
    [b] = seen
    # names from the baseline's (the workload's, the Service's, the Service's first selector label's value)
    assert (b.sandbox, b.workload_name, b.service_name) == ("pr-4", fork_name("web-v1", "pr-4"), fork_name("web", "pr-4"))
    assert b.pod_label == ("role", fork_name("frontend", "pr-4")) and b.origin == ORIGIN
    assert b.host == f"{fork_name('web', 'pr-4')}.shop.svc.corp.local"
    # the fork becomes a host fork to that Service, everywhere it is held; the builder's objects are generated
    assert lowered.keys[0].forks[0].destination == HostDestination(b.host)
    assert lowered.sandboxes[0].forks[0].destination == HostDestination(b.host)
    assert [o.name for o in lowered.generated] == ["made-" + fork_name("web", "pr-4")]


def test_an_expired_sandbox_is_bound_but_builds_nothing():
    calls = []
    lowered = lower(model(expired=True), (workload_forks(lambda b: calls.append(b) or ()),))
    assert calls == [] and lowered.generated == ()
    assert isinstance(lowered.sandboxes[0].forks[0].destination, HostDestination)


def test_the_pipeline_builds_with_the_kubernetes_backend():
    lowered = lower(model(), PASSES)
    seen = []  # the same binding, seen on its way to emit.kubernetes
    lower(model(), (workload_forks(lambda b: seen.append(b) or kubernetes.fork_objects(b)),))
    binding = seen[0]
    assert lowered.generated == kubernetes.fork_objects(binding)
    deployment, svc = (o.body for o in lowered.generated)
    assert deployment["metadata"]["name"] == binding.workload_name and deployment["spec"]["replicas"] == 2
    assert svc["spec"]["selector"] == {"role": binding.pod_label[1], "meshforge.dev/sandbox": "pr-4"}


def test_a_fork_to_a_laptop_goes_to_the_tunnel_node():
    lowered = local_forks(model(local=True))
    assert lowered.keys[0].forks[0].destination == HostDestination("meshforge-tunnel.meshforge.svc.cluster.local", 15080)
    assert [(f.key, f.service) for f in lowered.local_forks] == [("pr-4", "web.shop")]
    assert local_forks(replace(model(local=True), tunnel=None)).local_forks == ()
