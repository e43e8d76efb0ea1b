"""A network namespace where applications with no proxy settings are captured by `meshforge capture-rules` and
served by a transparent sidecar (a real Envoy, a real `meshforge serve`): for tests/test_capture.py and
benchmarks/bench_capture.py. Needs root, iproute2, iptables and util-linux's setpriv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from meshforge.envoyproc import envoy_binary

APP = Path(__file__).with_name("capture_app.py")
APP_UID = 4242  # the applications' user; the sidecar runs as root (uid 0)
HOSTS = {"frontend": "10.77.0.1", "cart": "10.77.0.2", "cart-pr": "10.77.0.3", "ledger": "10.77.0.4",
         "ledger-pr": "10.77.0.5", "outside": "10.77.0.8", "meshforge": "10.77.0.9"}
SPECS = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging}
spec:
  services:
  - name: frontend
    ports: [{name: http, port: 8080}]
    endpoints: [{address: 10.77.0.1, port: 8080}]
    dependsOn: [cart, ledger]
  - name: cart
    ports: [{name: http, port: 8080}]
    endpoints: [{address: 10.77.0.2, port: 8080}]
  - name: ledger
    ports: [{name: grpc, port: 9090}]
    endpoints: [{address: 10.77.0.4, port: 9090}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  forks:
  - service: cart
    to: {endpoints: [{address: 10.77.0.3, port: 8080}]}
  - service: ledger
    to: {endpoints: [{address: 10.77.0.5, port: 9090}]}
"""
SERVICES = {"services": [
    {"kind": "http", "name": "frontend", "address": "10.77.0.1", "port": 8080, "next": "http://cart:8080/"},
    {"kind": "http", "name": "cart", "address": "10.77.0.2", "port": 8080},
    {"kind": "http", "name": "cart-pr", "address": "10.77.0.3", "port": 8080},
    {"kind": "grpc", "name": "ledger", "address": "10.77.0.4", "port": 9090},
    {"kind": "grpc", "name": "ledger-pr", "address": "10.77.0.5", "port": 9090},
    {"kind": "http", "name": "outside", "address": "10.77.0.8", "port": 8080},
    {"kind": "tcp", "name": "outside-tcp", "address": "10.77.0.8", "port": 7000}]}


def kernel_reason() -> str | None:
    if os.geteuid() != 0:
        return "transparent capture tests need root (network namespaces, iptables)"
    for tool in ("ip", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: iproute2, iptables, util-linux)"
    probe = f"mf-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"the kernel refuses network namespaces: {r.stderr.strip()}"
    try:
        r = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"the kernel lacks netfilter's nat table: {r.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe])
    return None


class Namespace:
    def __init__(self, tmp: Path, hosts: dict[str, str] = HOSTS, prefix: str = "mf-cap"):
        self.name = f"{prefix}-{os.getpid()}"
        self.tmp = tmp
        self.hosts = hosts
        self.procs: list[subprocess.Popen] = []
        self.etc = Path("/etc/netns") / self.name

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            return self._setup()
        except BaseException:
            self.__exit__()
            raise

    def _setup(self):
        self.ip("link", "set", "lo", "up")
        # the services' addresses on the namespace's loopback device (this kernel may lack dummy and veth
        # devices); the capture rules leave only 127.0.0.0/8 alone, so these are captured like any other
        for address in self.hosts.values():
            self.ip("addr", "add", f"{address}/32", "dev", "lo")
        self.etc.mkdir(parents=True, exist_ok=True)  # `ip netns exec` mounts it over /etc/hosts
        (self.etc / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n} {n}.default\n"
                                                                          for n, a in self.hosts.items()))
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", self.name])
        shutil.rmtree(self.etc, ignore_errors=True)

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True)

    def run(self, *args: str, user: int | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(args, user), capture_output=True, text=True, timeout=60, **kw)

    def start(self, *args: str, user: int | None = None, log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.tmp / log, "w")
        p = subprocess.Popen(self._argv(args, user), stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def _argv(self, args, user):
        prefix = ["ip", "netns", "exec", self.name]
        if user is not None:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        return [*prefix, *args]

    def call(self, *args: str) -> dict:
        """One call by an application of the namespace (APP_UID: captured)."""
        r = self.run(sys.executable, str(APP), "call", *args, user=APP_UID)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout)


def names(answer: dict) -> list[str]:
    out = []
    while answer:
        out.append(answer.get("name") or f"HTTP {answer.get('status')}")
        answer = answer.get("next")
    return out


@contextmanager
def transparent_mesh(tmp_path: Path):
    """The namespace with serve, the applications (tests/capture_app.py) and the sidecar running and the capture
    rules applied; yields it once a keyed request went frontend -> cart-pr through the sidecar."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mesh.yaml").write_text(SPECS)
    readable = Path(tempfile.mkdtemp(prefix="mf-capture-", dir="/tmp"))  # the applications' user reads it
    os.chmod(readable, 0o755)
    (readable / "services.json").write_text(json.dumps(SERVICES))
    meshforge = [str(Path(sys.executable).with_name("meshforge"))]
    boot = subprocess.run([*meshforge, "bootstrap", "--service", "frontend", "--transparent",
                           "--xds-address", "10.77.0.9:18000", "--admin-port", "15000"],
                          capture_output=True, text=True, check=True).stdout
    (tmp_path / "envoy.yaml").write_text(boot)
    capture = subprocess.run([*meshforge, "capture-rules", "--proxy-uid", "0"], capture_output=True, text=True,
                             check=True).stdout
    with Namespace(tmp_path) as ns:
        ns.start(*meshforge, "serve", str(specs), "--xds-address", "10.77.0.9:18000",
                 "--admin-address", "127.0.0.1:18001", log="serve.log")
        ns.start(sys.executable, str(APP), "serve", str(readable / "services.json"), user=APP_UID, log="apps.log")
        ns.start(envoy_binary(), "-c", str(tmp_path / "envoy.yaml"), "--log-level", "warning", log="envoy.log")
        r = ns.run("iptables-restore", input=capture)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 30
        last = None
        while True:  # Envoy takes its configuration from serve (its xDS connection is its own: not captured)
            try:
                last = ns.call("http", "http://frontend:8080/", "baggage=meshforge-routing-key=pr-1")
                if names(last) == ["frontend", "cart-pr"]:
                    break
            except AssertionError as e:
                last = str(e)
            assert time.monotonic() < deadline, (last, (tmp_path / "envoy.log").read_text()[-3000:],
                                                 (tmp_path / "apps.log").read_text()[-2000:])
            time.sleep(0.3)
        try:
            yield ns
        finally:
            shutil.rmtree(readable, ignore_errors=True)
