"""Workload forks: rendered from the baseline workload, valid for Kubernetes, kept apart from the baseline,
routed to in every backend, gone when the sandbox expires."""

from __future__ import annotations

import re

import pytest
import yaml

from meshforge import backends
from meshforge.diagnostics import Diagnostics
from meshforge.lower import fork_name
from meshforge.pipeline import compile_paths

from .conftest import BOUTIQUE, NOW

SANDBOX = """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: {name}}}
spec:
  forks:
  - service: {service}
    to: {{workload: {workload}}}
"""


def render(paths, fmt="kubernetes"):
    model, diags = compile_paths([str(p) for p in paths], NOW)
    assert model is not None, [d.to_text() for d in diags.errors()]
    out = Diagnostics()
    files = backends.render(model, fmt, out)
    assert not out.has_errors, out.items
    return model, {name: yaml.safe_load(text) for name, text in files.items()}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_fork_objects_validate_strictly_against_kubernetes(write):
    import kubernetes_validate

    d = write({"s.yaml": SANDBOX.format(name="pr-1", service="cartservice",
                                        workload="{images: [{image: 'example/cart:pr-1'}], replicas: 3}")})
    _, files = render([BOUTIQUE, d])
    version = kubernetes_validate.latest_version()
    assert files
    for name, obj in files.items():
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_port_the_import_refused_is_left_out_of_the_forks_service_too(write):
    """A baseline Service with a port Kubernetes would refuse (quoted, a boolean): validate warns and routes the rest;
    the fork's Service carries only the ports Kubernetes takes (it validates, and a UDP port stays)."""
    import kubernetes_validate

    d = write({"app.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports:
  - {name: "9080", port: "9080", targetPort: 9080}
  - {name: flag, port: true}
  - {name: http, port: 9081, targetPort: 9080}
  - {name: stats, port: 8125, protocol: UDP}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews}}
    spec: {containers: [{name: reviews, image: "reviews:v1"}]}
""", "s.yaml": SANDBOX.format(name="pr-1", service="reviews", workload="{images: [{image: 'reviews:pr-1'}]}")})
    _, files = render([d])
    service = next(o for o in files.values() if o["kind"] == "Service")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("http", 9081), ("stats", 8125)]
    for obj in files.values():
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_the_baseline_never_selects_the_fork_and_the_forks_service_selects_only_it(write):
    d = write({"s.yaml": SANDBOX.format(name="pr-1", service="cartservice",
                                        workload="{images: [{image: 'example/cart:pr-1'}], env: [{name: X, value: '1'}]}")})
    _, files = render([BOUTIQUE, d])
    baseline = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(BOUTIQUE.read_text()) if o}
    base_svc, base_dep = baseline[("Service", "cartservice")], baseline[("Deployment", "cartservice")]
    fork = files[f"default/deployment-{fork_name('cartservice', 'pr-1')}.yaml"]
    svc = files[f"default/service-{fork_name('cartservice', 'pr-1')}.yaml"]
    fork_pods = fork["spec"]["template"]["metadata"]["labels"]
    assert not matches(base_svc["spec"]["selector"], fork_pods)
    assert matches(svc["spec"]["selector"], fork_pods)
    assert not matches(svc["spec"]["selector"], base_dep["spec"]["template"]["metadata"]["labels"])
    assert matches(fork["spec"]["selector"]["matchLabels"], fork_pods)  # the Deployment owns its pods
    assert [p["port"] for p in svc["spec"]["ports"]] == [p["port"] for p in base_svc["spec"]["ports"]]
    base_c, fork_c = base_dep["spec"]["template"]["spec"]["containers"][0], fork["spec"]["template"]["spec"]["containers"][0]
    assert fork_c["image"] == "example/cart:pr-1"
    assert {k: v for k, v in fork_c.items() if k not in ("image", "env")} == \
        {k: v for k, v in base_c.items() if k not in ("image", "env")}  # probes, ports, resources kept
    assert fork_c["env"][:len(base_c["env"])] == base_c["env"] and fork_c["env"][-1] == {"name": "X", "value": "1"}
    assert fork["spec"]["replicas"] == 1
    for obj in (fork, svc):
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshforge"
        assert obj["metadata"]["labels"]["meshforge.dev/sandbox"] == "pr-1"


def test_every_backend_routes_the_key_to_the_forks_service(write):
    d = write({"s.yaml": SANDBOX.format(name="pr-1", service="cartservice",
                                        workload="{images: [{image: 'example/cart:pr-1'}]}")})
    model, istio = render([BOUTIQUE, d], "istio")
    host = f"{fork_name('cartservice', 'pr-1')}.default.svc.cluster.local"
    vs = istio["default/virtualservice-meshforge-cartservice.yaml"]
    assert vs["spec"]["http"][0]["route"][0]["destination"]["host"] == host
    _, xds = render([BOUTIQUE, d], "xds")
    clusters = xds["frontend.default.yaml"]["resources"]["clusters"]
    fork = next(c for c in clusters if c["name"] == "outbound|7070|pr-1|cartservice.default.svc.cluster.local")
    assert fork["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
        "address"] == host
    from meshforge.explain import explain

    hop = next(h for h in explain(model, model.lookup("checkoutservice"), "pr-1").hops if h.service == "cartservice.default")
    assert hop.destination == f"host {host}"


def test_an_expired_sandbox_renders_no_workload(write):
    d = write({"s.yaml": SANDBOX.format(name="pr-1", service="cartservice",
                                        workload="{images: [{image: 'example/cart:pr-1'}]}").replace(
        "spec:\n", 'spec:\n  expiresAt: "2026-01-01T00:00:00Z"\n')})
    _, files = render([BOUTIQUE, d])
    assert files == {}


def test_workload_fork_errors_name_the_problem(write):
    several = write({"k.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec: {template: {metadata: {labels: {app: reviews}}, spec: {containers: [{name: a, image: x}, {name: b, image: y}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2}
spec: {template: {metadata: {labels: {app: reviews}}, spec: {containers: [{name: a, image: x}]}}}
""", "s.yaml": SANDBOX.format(name="pr-1", service="reviews", workload="{images: [{image: 'x:1'}]}")})
    model, diags = compile_paths([str(several)], NOW)
    assert model is None and [d.code for d in diags.errors()] == ["MF220"]
    assert "Deployment reviews-v1" in diags.errors()[0].message and "Deployment reviews-v2" in diags.errors()[0].message
    two = write({"s.yaml": SANDBOX.format(name="pr-1", service="checkoutservice",
                                          workload="{images: [{container: servr, image: 'x:1'}]}")}, sub="two")
    model, diags = compile_paths([str(BOUTIQUE), str(two)], NOW)
    assert [(d.code, d.hint) for d in diags.errors()] == [("MF221", 'did you mean "server"?')]
    bad = write({"s.yaml": SANDBOX.format(name="pr-1", service="cartservice",
                                          workload="{images: [{image: 'UPPER case'}], env: [{name: '1x', value: v}]}")},
                sub="bad")
    model, diags = compile_paths([str(BOUTIQUE), str(bad)], NOW)
    assert sorted(d.span.pointer for d in diags.errors()) == ["/spec/forks/0/to/workload/env/0/name",
                                                              "/spec/forks/0/to/workload/images/0/image"]
    none = write({"s.yaml": SANDBOX.format(name="pr-1", service="cartservice.shop", workload="{}"),
                  "b.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: b, namespace: shop}\n"
                            "spec:\n  services:\n  - {name: cartservice, ports: [{name: grpc, port: 7070}]}\n"},
                 sub="none")
    model, diags = compile_paths([str(none)], NOW)
    assert [d.code for d in diags.errors()] == ["MF220"] and "found none" in diags.errors()[0].message


def test_fork_names_are_stable_and_short():
    assert re.fullmatch(r"cart-pr-1-[0-9a-f]{8}", fork_name("cart", "pr-1"))
    assert fork_name("cart", "x-y") != fork_name("cart-x", "y")  # the words run together alike
    long = fork_name("a" * 40, "b" * 40)
    assert len(long) <= 63 and long == fork_name("a" * 40, "b" * 40) and long != fork_name("a" * 40, "b" * 39 + "c")


def test_everything_not_customised_is_kept_volumes_included(write):
    d = write({"k.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api, tier: backend}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: api
  namespace: shop
  uid: 3b0f2a4e-0000-1111-2222-333344445555
  resourceVersion: "99"
  creationTimestamp: "2026-01-01T00:00:00Z"
  annotations: {deployment.kubernetes.io/revision: "7", team: api}
spec:
  serviceName: api
  replicas: 5
  selector: {matchLabels: {app: api, tier: backend}}
  template:
    metadata: {labels: {app: api, tier: backend, version: v1}, annotations: {prometheus.io/scrape: "true"}}
    spec:
      volumes: [{name: cache, emptyDir: {}}, {name: cfg, configMap: {name: api-config}}]
      initContainers: [{name: migrate, image: example/api:1, command: [migrate]}]
      containers:
      - name: api
        image: example/api:1
        env: [{name: MODE, value: prod}, {name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}]
        volumeMounts: [{name: cache, mountPath: /cache}, {name: cfg, mountPath: /etc/api}]
        livenessProbe: {httpGet: {path: /healthz, port: 8080}}
      - {name: sidecar, image: example/log:1}
status: {readyReplicas: 5}
""", "s.yaml": SANDBOX.format(name="pr-2", service="api.shop", workload="{images: [{container: api, image: 'example/api:2'}], "
                                                                      "env: [{container: api, name: MODE, value: beta}], replicas: 2}")})
    _, files = render([d])
    fork = files[f"shop/statefulset-{fork_name('api', 'pr-2')}.yaml"]
    assert "status" not in fork and set(fork["metadata"]) == {"name", "namespace", "annotations", "labels"}
    assert fork["metadata"]["annotations"] == {"team": "api"} and fork["spec"]["serviceName"] == fork_name("api", "pr-2")
    spec = fork["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "cache", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "api-config"}}]
    assert spec["initContainers"][0]["image"] == "example/api:1"  # only the named container changes
    api, sidecar = spec["containers"]
    assert api["image"] == "example/api:2" and sidecar == {"name": "sidecar", "image": "example/log:1"}
    assert api["env"] == [{"name": "MODE", "value": "beta"},
                          {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    assert api["volumeMounts"][1] == {"name": "cfg", "mountPath": "/etc/api"} and "livenessProbe" in api
    assert fork["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert fork["spec"]["replicas"] == 2
    labels = fork["spec"]["template"]["metadata"]["labels"]
    assert labels["tier"] == "backend" and labels["app"] == fork_name("api", "pr-2")
    assert labels["version"] == "pr-2"  # its pods run the sandbox's version: telemetry credits them to it
    import kubernetes_validate

    for obj in files.values():
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_a_fork_names_the_workload_to_copy_and_a_rollout_forks_into_a_deployment():
    """golden/workload-from: a Service over reviews-v1/-v2/-v3 forks the one `from` names; a Service over an
    Argo Rollout forks into a Deployment with the Rollout's pod template; the forks' pods carry the sandbox's
    name in their version labels, and their Services declare the protocol meshforge routes by."""
    from pathlib import Path

    import kubernetes_validate

    from meshforge.backends import render as run
    from meshforge.diagnostics import Diagnostics
    from meshforge.pipeline import compile_paths

    model, diags = compile_paths([str(Path(__file__).resolve().parents[1] / "golden" / "workload-from" / "input")])
    assert model is not None, [d.to_text() for d in diags.errors()]
    files = {k: yaml.safe_load(v) for k, v in run(model, "kubernetes", Diagnostics()).items()}
    reviews = files[f"bookinfo/deployment-{fork_name('reviews-v3', 'reviews-pr-8')}.yaml"]
    pods = reviews["spec"]["template"]["metadata"]["labels"]
    assert pods["version"] == "reviews-pr-8" and pods["app.kubernetes.io/version"] == "reviews-pr-8"
    assert reviews["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/reviews:pr-8"
    ratings = files[f"bookinfo/deployment-{fork_name('ratings', 'reviews-pr-8')}.yaml"]
    assert ratings["apiVersion"] == "apps/v1" and ratings["kind"] == "Deployment" and "strategy" not in ratings["spec"]
    assert ratings["spec"]["replicas"] == 1
    svc = files[f"bookinfo/service-{fork_name('ratings', 'reviews-pr-8')}.yaml"]
    assert svc["spec"]["ports"][0]["appProtocol"] == "http"
    for obj in files.values():
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("source,error", [
    ("", "name the one to copy: to: {workload: {from: {name: reviews-v3}"),
    ("from: {name: reviews-v4}, ", "workload reviews-v4 is not one of the workloads"),
    ("from: {kind: StatefulSet, name: reviews-v3}, ", "StatefulSet reviews-v3 is not one of the workloads"),
])
def test_several_workloads_need_from_and_from_must_name_one_of_them(write, source, error):
    from pathlib import Path

    from meshforge.pipeline import compile_paths

    book = (Path(__file__).resolve().parents[1] / "golden" / "workload-from" / "input" / "bookinfo.yaml").read_text()
    d = write({"b.yaml": book, "s.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\n"
               "metadata: {name: pr-1, namespace: bookinfo}\nspec:\n  forks:\n  - service: reviews\n"
               f"    to: {{workload: {{{source}images: [{{image: 'x/y:1'}}]}}}}\n"})
    model, diags = compile_paths([str(d)])
    assert model is None
    text = "\n".join(x.to_text() for x in diags.errors())
    assert "MF220" in text and error in text, text
