"""`meshforge inject`: workload manifests come out with the capture init container and the transparent sidecar,
strictly valid and accepted by a real kube-apiserver; opted-out, already injected and non-workload objects pass
as they are; a workload whose service is ambiguous is an error and nothing is printed; workload forks that
`render --format kubernetes` makes of an injected baseline carry the sidecar."""

from __future__ import annotations

import yaml

from .istio_schema import kubernetes_errors

APP = """\
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      initContainers: [{name: migrate, image: "cart:1", command: [migrate]}]
      containers:
      - name: cart
        image: "cart:1"
        readinessProbe: {httpGet: {path: /healthz, port: 8080}}
        resources: {requests: {cpu: 100m}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: shop, annotations: {meshforge.dev/inject: "false"}}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: legacy, image: "legacy:1"}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: report}, annotations: {meshforge.dev/service: cart}}
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: "report:1"}]
"""


def inject(cli, tmp_path, text: str, *args: str):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "app.yaml").write_text(text)
    return cli("inject", str(tmp_path / "in"), "--xds-address", "meshforge.meshforge-system:18000", *args)


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def test_workloads_get_the_capture_and_the_sidecar(cli, tmp_path, kube):
    r = inject(cli, tmp_path, APP, "--exclude-port", "5432")
    assert r.exit_code == 0, r.output
    out = {o["metadata"]["name"] + "/" + o["kind"]: o for o in yaml.safe_load_all(r.stdout)}
    given = {o["metadata"]["name"] + "/" + o["kind"]: o for o in yaml.safe_load_all(APP)}
    assert out["cart/Service"] == given["cart/Service"] and out["legacy/Deployment"] == given["legacy/Deployment"]
    spec = pod_spec(out["cart/Deployment"])
    assert [c["name"] for c in spec["initContainers"]] == ["migrate", "meshforge-capture"]  # after the app's own
    capture = spec["initContainers"][1]
    assert capture["command"][-1] == ("meshforge capture-rules --proxy-uid 1337 --outbound-port 15001 "
                                      "--exclude-port 5432 | iptables-restore")
    assert capture["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    app, proxy = spec["containers"]
    assert app == given["cart/Deployment"]["spec"]["template"]["spec"]["containers"][0]  # probes, resources as they were
    assert "bootstrap --service cart.shop --transparent --xds-address meshforge.meshforge-system:18000" in \
        proxy["command"][-1] and proxy["securityContext"]["runAsUser"] == 1337
    job = pod_spec(out["report/CronJob"])
    assert "--service cart.shop" in job["containers"][1]["command"][-1]  # the annotation names it
    for o in out.values():
        assert kubernetes_errors(o) == [], (o["metadata"]["name"], kubernetes_errors(o))
    # a real API server takes them (defaulting, validation and admission as a cluster would)
    kube.kubectl("create", "namespace", "shop")
    kube.kubectl("apply", "--server-side", "-f", "-", input=r.stdout)
    stored = kube.get("deployment", "cart", "shop")
    assert [c["name"] for c in pod_spec(stored)["containers"]] == ["cart", "meshforge-proxy"]
    # injecting the output again changes nothing
    again = inject(cli, tmp_path, r.stdout, "--exclude-port", "5432")
    assert again.exit_code == 0 and list(yaml.safe_load_all(again.stdout)) == list(yaml.safe_load_all(r.stdout))
    assert "already injected" in again.stderr


ADMIN = """---
apiVersion: v1
kind: Service
metadata: {name: cart-admin, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{port: 9000}]
"""


def test_a_workload_two_services_select_is_an_error_and_nothing_is_printed(cli, tmp_path):
    two = APP.replace("metadata: {name: cart, namespace: shop}\nspec:\n  selector",
                      "metadata: {name: basket, namespace: shop}\nspec:\n  selector", 1) + ADMIN
    r = inject(cli, tmp_path, two)
    assert r.exit_code == 1 and r.stdout == ""
    assert "error[MF401]" in r.stderr and "basket, cart-admin" in r.stderr and "app.yaml:" in r.stderr


def test_of_several_services_the_one_named_after_the_workload_names_the_sidecar(cli, tmp_path):
    r = inject(cli, tmp_path, APP + ADMIN)  # cart and cart-admin select the Deployment cart
    assert r.exit_code == 0, r.output
    cart = next(o for o in yaml.safe_load_all(r.stdout) if o["kind"] == "Deployment" and o["metadata"]["name"] == "cart")
    assert "--service cart.shop " in pod_spec(cart)["containers"][-1]["command"][-1]


def test_online_boutique_is_injected_as_it_is(cli, tmp_path):
    """A real application's manifests (frontend has an internal and an external Service; loadgenerator none)."""
    from .conftest import SHARED

    r = cli("inject", str(SHARED / "datasets" / "online-boutique"), "--xds-address", "meshforge.infra:18000")
    assert r.exit_code == 0, r.output
    workloads = [o for o in yaml.safe_load_all(r.stdout) if o and o["kind"] == "Deployment"]
    assert len(workloads) >= 10
    for w in workloads:
        assert [c["name"] for c in pod_spec(w)["containers"]][-1] == "meshforge-proxy", w["metadata"]["name"]
        assert kubernetes_errors(w) == [], (w["metadata"]["name"], kubernetes_errors(w))
    frontend = next(w for w in workloads if w["metadata"]["name"] == "frontend")
    assert "--service frontend.default " in pod_spec(frontend)["containers"][-1]["command"][-1]


def test_workload_forks_of_an_injected_baseline_carry_the_sidecar(cli, tmp_path):
    r = inject(cli, tmp_path, APP)
    assert r.exit_code == 0
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "app.yaml").write_text(r.stdout)
    (specs / "sandbox.yaml").write_text("""\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-7, namespace: shop}
spec:
  forks:
  - service: cart
    to: {workload: {images: [{container: cart, image: "cart:pr-7"}]}}
""")
    rendered = cli("render", str(specs), "--format", "kubernetes")
    assert rendered.exit_code == 0, rendered.output
    fork = next(o for o in yaml.safe_load_all(rendered.stdout)
                if o and o["kind"] == "Deployment" and "pr-7" in o["metadata"]["name"])
    names = [c["name"] for c in pod_spec(fork)["containers"]]
    assert names == ["cart", "meshforge-proxy"] and pod_spec(fork)["containers"][0]["image"] == "cart:pr-7"


def test_the_readme_inject_command_runs_as_pasted(tmp_path, kube):
    """The README's inject line, in a directory holding k8s/, against the test API server (KUBECONFIG)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = re.search(r"`(meshforge inject k8s/ [^`]*)`", text)[1]
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "app.yaml").write_text(APP.replace("namespace: shop", "namespace: readme"))
    kube.kubectl("create", "namespace", "readme")
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    stored = kube.get("deployment", "cart", "readme")
    assert [c["name"] for c in pod_spec(stored)["containers"]] == ["cart", "meshforge-proxy"]


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=_ANY, template_meta=_ANY, spec=_ANY, containers=_ANY, init=_ANY, selector=_ANY)
def test_malformed_workloads_are_errors_never_tracebacks(cli, tmp_path, meta, template_meta, spec, containers,
                                                         init, selector):
    import json as _json

    docs = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
             "spec": {"template": {"metadata": template_meta, "spec": spec}}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
             "spec": {"template": {"spec": {"containers": containers, "initContainers": init}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"selector": selector}}]
    r = inject(cli, tmp_path, "\n---\n".join(_json.dumps(d) for d in docs))
    assert r.exit_code in (0, 1), r.output
    assert (r.exit_code == 1) == (r.stdout == "")  # an error prints nothing; success prints every document
