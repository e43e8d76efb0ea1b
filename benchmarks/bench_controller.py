"""`kubectl apply` of a Sandbox -> Ready, on a real kube-apiserver (tests/kube/up), with `meshforge controller`.

Two figures per run, each the median of --rounds sandboxes applied one after the other:
- apply -> Ready when the fork's endpoints are already there (the controller's own latency: watch event,
  compile, server-side apply of the fork's Deployment, Service and VirtualService, status);
- endpoints ready -> Ready (what a user waits for beyond the pod's own start).
Also how long one reconcile takes with --sandboxes already live.

    python benchmarks/bench_controller.py [--rounds 10] [--sandboxes 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MESHFORGE_SHARED", ROOT.parent / "shared"))


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    r = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=input, capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def manifest(ns: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart", "namespace": ns},
         "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cart", "namespace": ns},
         "spec": {"selector": {"matchLabels": {"app": "cart"}},
                  "template": {"metadata": {"labels": {"app": "cart"}},
                               "spec": {"containers": [{"name": "cart", "image": "example/cart:v1"}]}}}}]})


def sandbox(ns: str, name: str) -> str:
    return json.dumps({"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"forks": [{"service": "cart", "to": {"workload": {"images": [
                           {"image": f"example/cart:{name}"}]}}}]}})


def fork_service(kubeconfig: Path, ns: str, name: str) -> str | None:
    items = json.loads(kubectl(kubeconfig, "get", "services", "-n", ns, "-l", f"meshforge.dev/sandbox={name}",
                               "-o", "json"))["items"]
    return items[0]["metadata"]["name"] if items else None


def slice_for(ns: str, svc: str) -> str:
    return json.dumps({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": f"{svc}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                       "endpoints": [{"addresses": ["10.9.0.1"], "conditions": {"ready": True}}]})


def wait_ready(kubeconfig: Path, ns: str, name: str) -> None:
    kubectl(kubeconfig, "wait", "--for=condition=Ready", f"sandbox/{name}", "-n", ns, "--timeout=60s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sandboxes", type=int, default=0, help="sandboxes live before measuring")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-kube-"))
    subprocess.run([sys.executable, str(ROOT / "tests" / "kube" / "up"), str(d)], check=True)
    kc = d / "kubeconfig"
    ctl = None
    try:
        kubectl(kc, "apply", "--server-side", "-f", str(ROOT / "deploy" / "crds"))
        kubectl(kc, "apply", "--server-side", "-f", str(SHARED / "istio" / "crd-all.gen.yaml"))
        kubectl(kc, "wait", "--for=condition=Established", "crd/sandboxes.meshforge.dev", "--timeout=60s")
        ns = "bench"
        kubectl(kc, "apply", "-f", "-", input=manifest(ns))
        log = open(d / "controller.log", "w")
        ctl = subprocess.Popen([sys.executable, "-m", "meshforge.cli", "controller", "--kubeconfig", str(kc),
                                "--namespace", ns, "--log-level", "debug"], stdout=log, stderr=subprocess.STDOUT)
        for i in range(args.sandboxes):
            kubectl(kc, "apply", "-f", "-", input=sandbox(ns, f"bg-{i}"))
        if args.sandboxes:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                names = json.loads(kubectl(kc, "get", "services", "-n", ns, "-l", "app.kubernetes.io/managed-by=meshforge",
                                           "-o", "json"))["items"]
                if len(names) >= args.sandboxes:
                    break
                time.sleep(0.5)
            for item in names:
                kubectl(kc, "apply", "-f", "-", input=slice_for(ns, item["metadata"]["name"]))
        warm, cold = [], []
        for i in range(args.rounds):
            # the endpoints come after the fork: endpoints ready -> Ready
            name = f"pr-{i}"
            kubectl(kc, "apply", "-f", "-", input=sandbox(ns, name))
            while (svc := fork_service(kc, ns, name)) is None:
                time.sleep(0.05)
            t0 = time.perf_counter()
            kubectl(kc, "apply", "-f", "-", input=slice_for(ns, svc))
            wait_ready(kc, ns, name)
            cold.append(time.perf_counter() - t0)
            # the endpoints are there before the sandbox (its fork names are deterministic): apply -> Ready
            kubectl(kc, "delete", "sandbox", name, "-n", ns)
            t0 = time.perf_counter()
            kubectl(kc, "apply", "-f", "-", input=sandbox(ns, name))
            wait_ready(kc, ns, name)
            warm.append(time.perf_counter() - t0)
        print(f"live sandboxes before: {args.sandboxes}; rounds: {args.rounds}")
        print(f"apply -> Ready, endpoints already there: median {statistics.median(warm) * 1000:.0f} ms, "
              f"max {max(warm) * 1000:.0f} ms")
        print(f"endpoints ready -> Ready: median {statistics.median(cold) * 1000:.0f} ms, "
              f"max {max(cold) * 1000:.0f} ms")
        print("(each figure includes two kubectl processes, ~60-100 ms of it)")
    finally:
        if ctl is not None:
            ctl.terminate()
            ctl.wait()
        subprocess.run([sys.executable, str(ROOT / "tests" / "kube" / "down"), str(d)])
        print(f"controller log: {d / 'controller.log'}")


if __name__ == "__main__":
    main()
