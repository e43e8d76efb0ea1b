"""A real Kubernetes API server for tests (tests/kube/up), kubectl as the client, and `meshforge controller`
as a subprocess. Nothing here fakes the API server: etcd and kube-apiserver run on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .serve_harness import wait_until

KUBE = Path(__file__).resolve().parent / "kube"
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MESHFORGE_SHARED", ROOT.parent / "shared"))


class Kube:
    def __init__(self, directory: Path):
        self.dir = directory
        self.kubeconfig = directory / "kubeconfig"
        self.sa_kubeconfig: Path | None = None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig or self.kubeconfig), *args], input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr or r.stdout}")
        return r

    def apply(self, text: str, *args: str) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *args, input=text)

    def get(self, kind: str, name: str, namespace: str, managed_fields: bool = False) -> dict | None:
        extra = ["--show-managed-fields"] if managed_fields else []
        r = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", *extra, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def names(self, kind: str, namespace: str, selector: str | None = None) -> list[str]:
        args = ["get", kind, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
        return sorted(i["metadata"]["name"] for i in json.loads(self.kubectl(*args).stdout)["items"])

    def condition(self, name: str, namespace: str, type_: str = "Ready") -> dict | None:
        obj = self.get("sandbox", name, namespace)
        conds = ((obj or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == type_), None)

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def service_account_kubeconfig(self) -> Path:
        """A kubeconfig with the token of deploy/controller.yaml's ServiceAccount: the controller in the tests
        runs with the RBAC the install gives it, no more."""
        if self.sa_kubeconfig is None:
            token = self.kubectl("create", "token", "meshforge-controller", "-n", "meshforge-system",
                                 "--duration", "2h").stdout.strip()
            k = json.loads(self.kubeconfig.read_text())
            k["users"] = [{"name": "controller", "user": {"token": token}}]
            k["contexts"][0]["context"]["user"] = "controller"
            self.sa_kubeconfig = self.dir / "controller.kubeconfig"
            self.sa_kubeconfig.write_text(json.dumps(k))
        return self.sa_kubeconfig


def start_api_server(directory: Path) -> Kube:
    r = subprocess.run([sys.executable, str(KUBE / "up"), str(directory)], capture_output=True, text=True,
                       timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"tests/kube/up failed:\n{r.stderr}")
    kube = Kube(directory)
    kube.kubectl("apply", "--server-side", "-f", str(ROOT / "deploy" / "crds"))
    kube.kubectl("apply", "--server-side", "-f", str(SHARED / "istio" / "crd-all.gen.yaml"))
    kube.kubectl("apply", "--server-side", "-f", str(SHARED / "gateway-api"))
    kube.kubectl("apply", "--server-side", "-f", str(ROOT / "deploy" / "controller.yaml"))
    for crd in ("sandboxes.meshforge.dev", "virtualservices.networking.istio.io", "httproutes.gateway.networking.k8s.io"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    return kube


def stop_api_server(kube: Kube) -> None:
    subprocess.run([sys.executable, str(KUBE / "down"), str(kube.dir)], timeout=60)


class Controller:
    """`meshforge controller` against the test API server, watching the given namespaces."""

    def __init__(self, kube: Kube, *args: str, kubeconfig: Path | None = None):
        self.kube, self.args = kube, list(args)
        self.kubeconfig = kubeconfig or kube.service_account_kubeconfig()
        self.log_path = Path(tempfile.mkstemp(prefix="meshforge-controller-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Controller":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshforge.cli", "controller", "--kubeconfig", str(self.kubeconfig),
             "--log-level", "debug", *self.args],
            stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        wait_until(lambda: "controller: backend" in self.log() or self.proc.poll() is not None, 20, what="controller up")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def __enter__(self) -> "Controller":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def endpoint_slice(service: str, namespace: str, address: str, port: int, ready: bool = True,
                   port_name: str = "http") -> str:
    """The EndpointSlice a cluster's endpoint-slice controller writes for a Service whose pod is (not) ready."""
    return json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-slice", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready, "serving": ready,
                                                               "terminating": False}}]})


def app(namespace: str, name: str, env: dict | None = None, port: int = 80, target: int = 8080) -> str:
    """A Service and its Deployment, as a team's manifests hold them."""
    container = {"name": name, "image": f"example/{name}:v1"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return "---\n".join(yaml.safe_dump(o) for o in (
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": target}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name, "version": "v1"}},
                               "spec": {"containers": [container]}}}}))


def sandbox(name: str, namespace: str, service: str, image: str | None = None, *, expires: str | None = None,
            on_unready: str | None = None, to: dict | None = None) -> str:
    spec: dict = {"forks": [{"service": service, "to": to or {"workload": {"images": [{"image": image}]}}}]}
    if expires:
        spec["expiresAt"] = expires
    if on_unready:
        spec["onUnready"] = on_unready
    return json.dumps({"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox",
                       "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def host_address() -> str:
    """This machine's own (non-loopback) IPv4 address: an EndpointSlice may not name 127.0.0.0/8, so the apps
    behind test EndpointSlices listen here. No packet is sent: connect() on UDP only picks the route."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        address = s.getsockname()[0]
    finally:
        s.close()
    assert not address.startswith("127."), "this machine has no IPv4 address besides loopback"
    return address


def wait_for(pred, timeout: float = 20, what: str = "condition"):
    return wait_until(pred, timeout, interval=0.2, what=what)  # each try runs kubectl


def now_plus(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
