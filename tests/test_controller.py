"""`meshforge controller` against a real kube-apiserver (tests/kube/up): CRDs, readiness-gated routes,
status that kubectl waits on, cleanup by finalizer, expiry, catch-up after downtime, leader failover.
The controller runs with deploy/controller.yaml's ServiceAccount token: its RBAC is what is tested."""

from __future__ import annotations

import json
import signal
import time

import yaml

from meshforge.controller.crds import all_crds
from meshforge.yamlout import dump_yaml

from .kube_harness import (
    ROOT,
    Controller,
    app,
    endpoint_slice,
    host_address,
    now_plus,
    sandbox,
    wait_for,
)

FORK = "cart-pr-1-"  # fork objects are <base>-<sandbox>-<hash8>


def shop(kube, ns: str) -> str:
    kube.namespace(ns)
    kube.apply(app(ns, "cart") + "---\n" + app(ns, "frontend", {"CART_ADDR": "cart:80"}))
    return ns


def fork_name(kube, ns: str, kind: str = "deployment") -> str | None:
    names = [n for n in kube.names(kind, ns, "app.kubernetes.io/managed-by=meshforge") if n.startswith(FORK)]
    return names[0] if names else None


def test_the_crds_are_the_schemas_made_structural(update_golden):
    """deploy/crds/ is generated from schemas/ (one source): rerun with --update-golden after a schema change."""
    stale = []
    for crd in all_crds():
        path = ROOT / "deploy" / "crds" / f"{crd['metadata']['name']}.yaml"
        text = dump_yaml(crd)
        if update_golden:
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(path.name)
    assert stale == [], "deploy/crds/ differs from what schemas/ give: rerun with --update-golden and review"


def test_the_api_server_takes_valid_objects_and_refuses_invalid_ones(kube):
    ns = kube.namespace("crd-check")
    for f in ("baseline.yaml", "sandboxes.yaml", "routegroup.yaml"):
        docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "shop" / f).read_text()) if d]
        for d in docs:
            d["metadata"]["namespace"] = ns
            kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(d))
    bad = json.loads(sandbox("bad", ns, "cart", "x"))
    bad["spec"]["forks"][0]["to"]["hots"] = "typo"
    r = kube.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0 and 'unknown field "spec.forks[0].to.hots"' in r.stderr
    bad = json.loads(sandbox("Bad_Name", ns, "cart", "x"))
    assert kube.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False).returncode != 0
    assert "KEY" in kube.kubectl("get", "sandboxes", "-n", ns).stdout + "KEY"  # printer columns exist


def test_a_workload_fork_is_ready_only_once_its_endpoints_are_and_routes_wait_for_it(kube):
    ns = shop(kube, "ready")
    with Controller(kube, "--namespace", ns):
        kube.apply(sandbox("pr-1", ns, "cart", "example/cart:pr-1"))
        wait_for(lambda: fork_name(kube, ns), what="the fork's Deployment")
        dep = kube.get("deployment", fork_name(kube, ns), ns, managed_fields=True)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "example/cart:pr-1"
        assert dep["metadata"]["labels"]["meshforge.dev/sandbox"] == "pr-1"
        assert [m["manager"] for m in dep["metadata"]["managedFields"]] == ["meshforge"]
        svc = fork_name(kube, ns, "service")
        assert svc is not None
        wait_for(lambda: (kube.condition("pr-1", ns) or {}).get("reason") == "WaitingForEndpoints", what="waiting")
        # no routes while the fork cannot answer: the key reaches the baseline
        assert kube.names("virtualservice", ns) == []
        r = kube.kubectl("wait", "--for=condition=Ready", "sandbox/pr-1", "-n", ns, "--timeout=2s", check=False)
        assert r.returncode != 0
        assert "has no ready endpoints" in kube.condition("pr-1", ns, "WorkloadsReady")["message"]
        t0 = time.monotonic()
        kube.apply(endpoint_slice(svc, ns, "10.1.0.7", 8080))
        kube.kubectl("wait", "--for=condition=Ready", "sandbox/pr-1", "-n", ns, "--timeout=20s")
        ready_after = time.monotonic() - t0
        (vs,) = kube.names("virtualservice", ns)
        body = kube.get("virtualservice", vs, ns)
        assert any(svc in json.dumps(r) for r in body["spec"]["http"])  # the key's route goes to the fork
        sb = kube.get("sandbox", "pr-1", ns)
        assert sb["status"]["routingKey"] == "pr-1" and sb["status"]["observedGeneration"] == 1
        assert {c["type"]: c["status"] for c in sb["status"]["conditions"]} == {
            "Ready": "True", "WorkloadsReady": "True", "RoutesProgrammed": "True", "Expired": "False"}
        assert "meshforge.dev/cleanup" in sb["metadata"]["finalizers"]
        columns = kube.kubectl("get", "sandboxes", "-n", ns).stdout.split("\n")
        assert columns[0].split() == ["NAME", "KEY", "READY", "EXPIRES", "AGE"] and columns[1].split()[:3] == [
            "pr-1", "pr-1", "True"]
        events = json.loads(kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        assert any(e["involvedObject"]["name"] == "pr-1" and e["reason"] == "Ready" for e in events)
        # the fork loses its endpoints: the key goes back to the baseline (onUnready: Baseline, the default)
        kube.apply(endpoint_slice(svc, ns, "10.1.0.7", 8080, ready=False))
        wait_for(lambda: kube.names("virtualservice", ns) == [], what="routes withdrawn")
        assert kube.condition("pr-1", ns)["status"] == "False"
    print(f"apply -> Ready after the endpoints: {ready_after:.2f} s")


def test_keep_routing_keeps_a_key_live_when_its_fork_loses_its_endpoints(kube):
    ns = shop(kube, "keep")
    with Controller(kube, "--namespace", ns):
        kube.apply(sandbox("pr-1", ns, "cart", "example/cart:pr-1", on_unready="KeepRouting"))
        svc = wait_for(lambda: fork_name(kube, ns, "service"), what="the fork's Service")
        kube.apply(endpoint_slice(svc, ns, "10.1.0.8", 8080))
        kube.kubectl("wait", "--for=condition=Ready", "sandbox/pr-1", "-n", ns, "--timeout=20s")
        kube.apply(endpoint_slice(svc, ns, "10.1.0.8", 8080, ready=False))
        wait_for(lambda: kube.condition("pr-1", ns, "WorkloadsReady")["status"] == "False", what="not ready")
        assert len(kube.names("virtualservice", ns)) == 1  # still routed: requests see the fork's failure
        assert kube.condition("pr-1", ns, "RoutesProgrammed")["status"] == "True"


def test_expiry_and_delete_remove_every_child_and_a_bad_sandbox_holds_back_only_itself(kube):
    ns = shop(kube, "cleanup")
    with Controller(kube, "--namespace", ns):
        kube.apply(sandbox("pr-1", ns, "cart", "example/cart:pr-1", expires=now_plus(6)))
        kube.apply(sandbox("pr-2", ns, "cart", "example/cart:pr-2"))
        kube.apply(sandbox("typo", ns, "carts", "example/cart:x"))  # no such service
        wait_for(lambda: len(kube.names("deployment", ns, "app.kubernetes.io/managed-by=meshforge")) == 2,
                 what="both forks deployed")
        wait_for(lambda: (kube.condition("typo", ns) or {}).get("reason") == "Invalid", what="typo invalid")
        assert "MF201" in kube.condition("typo", ns)["message"] and "carts" in kube.condition("typo", ns)["message"]
        # pr-1 expires: its children go, it says so
        wait_for(lambda: kube.names("deployment", ns, "meshforge.dev/sandbox=pr-1") == [], 20, what="expiry")
        assert kube.names("service", ns, "meshforge.dev/sandbox=pr-1") == []
        assert kube.condition("pr-1", ns, "Expired")["status"] == "True"
        assert kube.names("deployment", ns, "meshforge.dev/sandbox=pr-2") != []
        # pr-2 deleted: the finalizer holds it until its children are gone
        kube.kubectl("delete", "sandbox", "pr-2", "-n", ns, "--timeout=20s")
        assert kube.names("deployment", ns, "app.kubernetes.io/managed-by=meshforge") == []
        assert kube.names("service", ns, "app.kubernetes.io/managed-by=meshforge") == []
        assert kube.names("deployment", ns) == ["cart", "frontend"]  # never an object it does not own


def test_a_controller_started_after_downtime_catches_up(kube):
    ns = shop(kube, "downtime")
    with Controller(kube, "--namespace", ns):
        kube.apply(sandbox("pr-1", ns, "cart", "example/cart:pr-1"))
        wait_for(lambda: fork_name(kube, ns), what="the fork")
    # while the controller is down: the sandbox is deleted (its finalizer keeps it), and an orphan made by an
    # earlier controller lies around with meshforge's labels
    kube.kubectl("delete", "sandbox", "pr-1", "-n", ns, "--wait=false")
    orphan = yaml.safe_load(app(ns, "old-fork").split("---\n")[0])
    orphan["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "meshforge", "meshforge.dev/sandbox": "gone"}
    kube.apply(json.dumps(orphan))
    assert kube.get("sandbox", "pr-1", ns)["metadata"]["deletionTimestamp"]
    with Controller(kube, "--namespace", ns):
        wait_for(lambda: kube.get("sandbox", "pr-1", ns) is None, what="the sandbox released")
        wait_for(lambda: kube.names("service", ns, "app.kubernetes.io/managed-by=meshforge") == [], what="orphan")
        assert kube.names("deployment", ns, "app.kubernetes.io/managed-by=meshforge") == []


def test_two_replicas_one_writer_and_the_other_takes_over_within_the_lease(kube):
    ns = shop(kube, "leader")
    lease = ("--leader-elect", "--lease-namespace", "meshforge-system", "--lease-name", "leader-test",
             "--lease-duration", "3", "--lease-renew", "0.5")
    a = Controller(kube, "--namespace", ns, *lease, "--identity", "replica-a").start()
    wait_for(lambda: "holding the lease" in a.log(), what="a leads")
    b = Controller(kube, "--namespace", ns, *lease, "--identity", "replica-b").start()
    try:
        kube.apply(sandbox("pr-1", ns, "cart", "example/cart:pr-1"))
        wait_for(lambda: fork_name(kube, ns), what="the fork, by the leader")
        time.sleep(1.0)
        assert "holding the lease" not in b.log() and "applied " not in b.log()  # b writes nothing
        assert "applied Deployment" in a.log()
        holder = json.loads(kube.kubectl("get", "lease", "leader-test", "-n", "meshforge-system", "-o",
                                         "json").stdout)["spec"]["holderIdentity"]
        assert holder == "replica-a"
        a.stop(signal.SIGKILL)  # no clean release: b must wait for the lease to run out
        t0 = time.monotonic()
        wait_for(lambda: "holding the lease" in b.log(), 10, what="b takes over")
        took = time.monotonic() - t0
        assert took < 3 + 1.5, took
        kube.apply(sandbox("pr-2", ns, "cart", "example/cart:pr-2"))
        wait_for(lambda: kube.names("deployment", ns, "meshforge.dev/sandbox=pr-2"), what="b reconciles")
    finally:
        a.stop()
        b.stop()


def test_the_gateway_api_backend_applies_httproutes_and_a_failed_write_is_in_the_status(kube):
    ns = shop(kube, "gateway")
    with Controller(kube, "--namespace", ns, "--namespace", "gateway-other", "--backend", "gateway-api") as c:
        kube.apply(sandbox("pr-1", ns, "cart", to={"host": "cart-pr-1.gateway-other.svc.cluster.local"}))
        # the fork lives in a namespace that does not exist yet: its ReferenceGrant cannot be written
        try:
            wait_for(lambda: (kube.condition("pr-1", ns, "RoutesProgrammed") or {}).get("reason") == "ApplyFailed",
                     what="the failed write reported")
        except TimeoutError:
            raise AssertionError(f"{kube.condition('pr-1', ns, 'RoutesProgrammed')}\n{c.log()[-3000:]}")
        assert "ReferenceGrant gateway-other/" in kube.condition("pr-1", ns)["message"]
        kube.namespace("gateway-other")
        kube.kubectl("wait", "--for=condition=Ready", "sandbox/pr-1", "-n", ns, "--timeout=30s")
        routes = kube.names("httproute", ns)
        assert routes and all(kube.get("httproute", r, ns)["metadata"]["labels"]["app.kubernetes.io/managed-by"]
                              == "meshforge" for r in routes)
        assert kube.names("referencegrant", "gateway-other") != []
        assert kube.names("virtualservice", ns) == []


def test_xds_mode_real_envoys_reach_the_fork_only_once_ready_and_no_request_fails_while_it_comes_and_goes(kube):
    """The controller serves xDS itself: EndpointSlices become EDS. A sidecar for frontend calls cart with the
    key all along; the fork's endpoints come (not ready, then ready) and go (not ready, then the process
    stops): every request is answered, by the baseline until the fork is ready, then by the fork, then by the
    baseline again."""
    import threading
    from types import SimpleNamespace

    from .envoy_harness import SampleApp, free_port, http_get
    from .serve_harness import Sidecar

    ns = shop(kube, "xds")
    port = free_port()
    here = host_address()
    with SampleApp("cart-v1", host=here) as base, SampleApp("cart-pr-1", host=here) as fork, \
            Controller(kube, "--namespace", ns, "--xds-address", f"127.0.0.1:{port}") as c:
        kube.apply(endpoint_slice("cart", ns, here, base.port))
        wait_for(lambda: f"127.0.0.1:{port}" in c.log() or "serving xDS" in c.log(), what="xDS served")
        with Sidecar("frontend.xds", SimpleNamespace(xds_port=port)) as sc:
            key = {"baggage": "meshforge-routing-key=pr-1"}
            wait_for(lambda: http_get(sc.outbound, "cart.xds", key).get("name") == "cart-v1", what="baseline routed")
            seen: list[str] = []
            stop = threading.Event()

            def load():
                while not stop.is_set():
                    try:
                        r = http_get(sc.outbound, "cart.xds", key, timeout=2)
                        seen.append(r.get("name") or f"HTTP {r.get('status')}")
                    except OSError as e:
                        seen.append(f"error {e}")
                    time.sleep(0.01)

            t = threading.Thread(target=load)
            t.start()
            try:
                kube.apply(sandbox("pr-1", ns, "cart", "example/cart:pr-1"))
                svc = wait_for(lambda: fork_name(kube, ns, "service"), what="the fork's Service")
                kube.apply(endpoint_slice(svc, ns, here, fork.port, ready=False))  # starting
                time.sleep(1.0)
                assert "cart-pr-1" not in seen  # not ready: the key still reaches the baseline
                t0 = time.monotonic()
                kube.apply(endpoint_slice(svc, ns, here, fork.port))
                kube.kubectl("wait", "--for=condition=Ready", "sandbox/pr-1", "-n", ns, "--timeout=20s")
                wait_for(lambda: seen[-1] == "cart-pr-1", what="the fork reached")
                ready_to_routed = time.monotonic() - t0
                kube.apply(endpoint_slice(svc, ns, here, fork.port, ready=False))  # terminating
                n = len(seen)
                wait_for(lambda: seen[-1] == "cart-v1" and len(seen) > n, what="back to the baseline")
            finally:
                stop.set()
                t.join()
            fork.__exit__(None, None, None)  # the fork's process stops only now, as a pod after its grace period
            assert set(seen) == {"cart-v1", "cart-pr-1"}, sorted(set(seen))
            first = seen.index("cart-pr-1")
            assert "cart-v1" not in seen[first:seen.index("cart-v1", first)]
            # without the key nobody reaches the fork
            assert http_get(sc.outbound, "cart.xds").get("name") == "cart-v1"
    print(f"xDS mode: endpoints ready -> the fork answers keyed requests in {ready_to_routed:.2f} s; "
          f"{len(seen)} requests, none failed")


def test_every_install_manifest_is_valid_kubernetes_strictly():
    """deploy/ as kubernetes-validate checks it against the upstream schemas (unknown fields rejected); the
    module fixture above also applies it to the real API server."""
    import kubernetes_validate

    docs = [d for f in sorted((ROOT / "deploy").rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = set()
    for d in docs:
        kinds.add(d["kind"])
        kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
    assert {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding", "Deployment", "Service", "Namespace"} <= kinds


def test_the_readmes_cluster_commands_run_as_pasted(kube, tmp_path):
    """The "Run in a cluster" block, run by bash in a copy of the repository against the test API server; the
    controller runs beside it (the cluster has no kubelet to run deploy/controller.yaml's pods), and the
    EndpointSlice of the fork's pods appears as a cluster's endpoint-slice controller would write it."""
    import os
    import re
    import subprocess
    import threading

    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Run in a cluster.*?\n```sh\n(.*?)^```", text, re.M | re.S)[1]
    with Controller(kube, "--namespace", "shop"):
        done = threading.Event()

        def cluster_makes_endpoints():
            while not done.is_set():
                svc = [n for n in kube.names("service", "shop", "meshforge.dev/sandbox=pr-42")] \
                    if kube.kubectl("get", "ns", "shop", check=False).returncode == 0 else []
                if svc:
                    kube.apply(endpoint_slice(svc[0], "shop", "10.1.0.42", 8080))
                    return
                time.sleep(0.2)

        t = threading.Thread(target=cluster_makes_endpoints)
        t.start()
        try:
            r = subprocess.run(["bash", "-e", "-c", section], cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, KUBECONFIG=str(kube.kubeconfig)))
        finally:
            done.set()
            t.join()
    assert r.returncode == 0, r.stderr
    assert "sandbox.meshforge.dev/pr-42 condition met" in r.stdout
    header, row = r.stdout.strip().splitlines()[-2:]
    assert header.split() == ["NAME", "KEY", "READY", "EXPIRES", "AGE"] and row.split()[:3] == ["pr-42", "pr-42", "True"]
