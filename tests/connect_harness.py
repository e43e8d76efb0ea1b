"""A shared environment and two laptops on one machine, for tests/test_connect.py and benchmarks/bench_connect.py.

In a network namespace: `meshforge serve`, the edge, sidecars for web and cart, the baseline applications
web -> cart -> pay (tests/capture_app.py), and the tunnel node (`meshforge bootstrap --tunnel`), all real. The
laptops' applications listen on addresses that the kernel's netfilter closes to every process but their own
laptop's Envoy (run as the laptop's user): nothing in the "cluster" can connect to a laptop, so a request reaches
one only over the reverse tunnel the laptop's `meshforge connect` opened. Needs root, iproute2, iptables, setpriv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from meshforge.envoyproc import envoy_binary
from tests.certs import CA
from tests.netns_harness import APP, Namespace, kernel_reason, names  # noqa: F401 - re-exported

LAPTOP_UIDS = {"alice": 4251, "bob": 4252}
HOSTS = {"web": "10.79.0.1", "cart": "10.79.0.2", "pay": "10.79.0.3", "alice-laptop": "10.79.0.50",
         "bob-laptop": "10.79.0.51", "cart-pr": "10.79.0.52"}
PORTS = {"serve": 18000, "serve-admin": 18001, "edge": 18080, "web-sidecar": 15001, "cart-sidecar": 15002,
         "tunnel": 15080, "tunnel-accept": 15443}
OWNERS = {"alice": "spiffe://dev.example/alice", "bob": "bob@example.com"}
SPECS = f"""\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  tunnel: {{host: 127.0.0.1, port: {PORTS['tunnel']}}}
  edge: {{service: web, hosts: [shop.test], previewDomain: preview.test}}
  services:
  - name: web
    ports: [{{name: http, port: 8080}}]
    endpoints: [{{address: {HOSTS['web']}, port: 8080}}]
    dependsOn: [cart]
  - name: cart
    ports: [{{name: http, port: 8080}}]
    endpoints: [{{address: {HOSTS['cart']}, port: 8080}}]
    dependsOn: [pay]
  - name: pay
    ports: [{{name: http, port: 8080}}]
    endpoints: [{{address: {HOSTS['pay']}, port: 8080}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: alice}}
spec:
  forks:
  - service: cart
    to: {{local: {{owner: "{OWNERS['alice']}"}}}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: bob}}
spec:
  forks:
  - service: cart
    to: {{local: {{owner: "{OWNERS['bob']}"}}}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr}}
spec:
  forks:
  - service: cart
    to: {{endpoints: [{{address: {HOSTS['cart-pr']}, port: 8080}}]}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: carol}}
spec:
  forks:
  - service: cart
    to: {{local: {{otherwise: {{endpoints: [{{address: {HOSTS['cart-pr']}, port: 8080}}]}}}}}}
"""


def services(proxies: dict[str, str]) -> dict:
    return {"services": [
        {"kind": "http", "name": "web", "address": HOSTS["web"], "port": 8080, "next": "http://cart:8080/",
         "proxy": proxies["web"]},
        {"kind": "http", "name": "cart", "address": HOSTS["cart"], "port": 8080, "next": "http://pay:8080/",
         "proxy": proxies["cart"]},
        {"kind": "http", "name": "pay", "address": HOSTS["pay"], "port": 8080},
        # the same application as a laptop's, as an in-cluster fork (what the tunnel's latency is measured against)
        {"kind": "http", "name": "cart@pr", "address": HOSTS["cart-pr"], "port": 8080, "next": f"http://{HOSTS['pay']}:8080/"}]}


def laptop_app(who: str) -> dict:
    """The laptop's cart: it calls pay directly (as a developer's process would, over a VPN or port-forward)."""
    return {"services": [{"kind": "http", "name": f"cart@{who}", "address": HOSTS[f"{who}-laptop"], "port": 8080,
                          "next": f"http://{HOSTS['pay']}:8080/"}]}


def _url(key: str | None) -> str:
    return f"http://{key}.preview.test/" if key else "http://shop.test/"


class Env:
    def __init__(self, ns: Namespace, tmp: Path, shared: Path, meshforge: list[str]):
        self.ns, self.tmp, self.shared, self.meshforge = ns, tmp, shared, meshforge
        self.laptops: dict[str, subprocess.Popen] = {}

    def edge(self, key: str | None = None) -> list[str]:
        """One request at the edge, from outside (so with a key only by its preview host); the hops that answered."""
        r = self.ns.run(sys.executable, str(APP), "call", "proxy", f"127.0.0.1:{PORTS['edge']}", _url(key))
        assert r.returncode == 0, r.stderr[-2000:]
        return names(json.loads(r.stdout))

    def connect(self, who: str, key: str, cert: str | None = None, *extra: str) -> subprocess.Popen:
        """`meshforge connect cart` as `who`'s user, with `cert`'s certificate (default: who's own)."""
        cert = cert or who
        p = self.ns.start(*self.meshforge, "connect", "cart", "--routing-key", key,
                          "--to", f"{HOSTS[f'{who}-laptop']}:8080", "--via", f"127.0.0.1:{PORTS['tunnel-accept']}",
                          "--tls-ca-file", str(self.shared / "ca.crt"), "--tls-cert-file", str(self.shared / f"{cert}.crt"),
                          "--tls-key-file", str(self.shared / f"{cert}.key"), "--server-name", "tunnel.test", *extra,
                          user=LAPTOP_UIDS[who], log=f"connect-{who}-{key}-{cert}.log",
                          env=dict(os.environ, HOME=str(self.shared)))
        self.laptops[f"{who}/{key}/{cert}"] = p
        return p

    def connect_log(self, who: str, key: str, cert: str | None = None) -> str:
        return (self.tmp / f"connect-{who}-{key}-{cert or who}.log").read_text()

    def wait_edge(self, want: list[str], key: str | None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.edge(key=key)
            except AssertionError as e:  # not listening yet
                last = str(e)[-300:]
            if last == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"key {key}: {last} instead of {want}; logs: {self.logs()}")

    def laptop_envoy(self, connect: subprocess.Popen) -> int:
        """The pid of the Envoy that a `meshforge connect` runs."""
        out = subprocess.run(["pgrep", "-P", str(connect.pid)], capture_output=True, text=True).stdout.split()
        pids = [int(p) for p in out if Path(f"/proc/{p}/exe").resolve().name == "envoy"]
        assert len(pids) == 1, (out, pids)
        return pids[0]

    def start_load(self, key: str | None, name: str) -> tuple[subprocess.Popen, Path]:
        stop = self.shared / f"stop-{name}"
        stop.unlink(missing_ok=True)
        out = open(self.tmp / f"load-{name}.json", "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns.name, sys.executable, str(APP), "load", _url(key),
                              f"127.0.0.1:{PORTS['edge']}", str(stop)], stdout=out, stderr=subprocess.STDOUT)
        return p, stop

    def stop_load(self, load: tuple[subprocess.Popen, Path], name: str) -> dict:
        p, stop = load
        stop.touch()
        p.wait(30)
        text = (self.tmp / f"load-{name}.json").read_text()
        return json.loads(text)

    def interrupt(self, connect: subprocess.Popen, timeout: float = 20) -> int:
        connect.send_signal(signal.SIGINT)
        return connect.wait(timeout)

    def logs(self) -> str:
        parts = []
        for f in sorted(self.tmp.glob("*.log")):
            parts.append(f"--- {f.name}\n{f.read_text()[-1500:]}")
        return "\n".join(parts)


@contextmanager
def shared_environment(tmp_path: Path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mesh.yaml").write_text(SPECS)
    shared = Path(tempfile.mkdtemp(prefix="mf-connect-", dir="/tmp"))  # the laptops' users read it
    os.chmod(shared, 0o755)
    ca = CA("meshforge-tunnel-ca")
    (shared / "ca.crt").write_bytes(ca.pem())
    ca.write(shared, "tunnel", "tunnel", dns=("tunnel.test",))
    ca.write(shared, "alice", "alice", uris=(OWNERS["alice"],))
    ca.write(shared, "bob", "bob", emails=(OWNERS["bob"],))
    for f in shared.iterdir():
        os.chmod(f, 0o644)  # the laptops' users read their keys (a test machine: one directory for all)
    proxies = {"web": f"127.0.0.1:{PORTS['web-sidecar']}", "cart": f"127.0.0.1:{PORTS['cart-sidecar']}"}
    (shared / "services.json").write_text(json.dumps(services(proxies)))
    for who in LAPTOP_UIDS:
        (shared / f"{who}.json").write_text(json.dumps(laptop_app(who)))
    meshforge = [str(Path(sys.executable).with_name("meshforge"))]

    def boot(*args: str) -> Path:
        out = subprocess.run([*meshforge, "bootstrap", *args, "--xds-address", f"127.0.0.1:{PORTS['serve']}"],
                             capture_output=True, text=True, check=True).stdout
        path = tmp_path / f"boot-{len(list(tmp_path.glob('boot-*')))}.yaml"
        path.write_text(out)
        return path

    sidecars = {svc: boot("--service", svc, "--outbound-port", PORTS[f"{svc}-sidecar"].__str__(), "--admin-port", "0")
                for svc in ("web", "cart")}
    edge = boot("--edge", "--listen-address", f"127.0.0.1:{PORTS['edge']}", "--admin-port", "0")
    tunnel = boot("--tunnel", "--listen-address", f"127.0.0.1:{PORTS['tunnel']}", "--accept-address",
                  f"127.0.0.1:{PORTS['tunnel-accept']}", "--tunnel-cert-file", str(shared / "tunnel.crt"),
                  "--tunnel-key-file", str(shared / "tunnel.key"), "--tunnel-client-ca-file", str(shared / "ca.crt"),
                  "--admin-port", "15900")
    with Namespace(tmp_path, HOSTS, "mf-conn") as ns:
        for who, uid in LAPTOP_UIDS.items():  # nothing but the laptop's own Envoy may connect to its address
            r = ns.run("iptables", "-A", "OUTPUT", "-p", "tcp", "--syn", "-d", HOSTS[f"{who}-laptop"], "-m", "owner",
                       "!", "--uid-owner", str(uid), "-j", "REJECT", "--reject-with", "tcp-reset")
            assert r.returncode == 0, r.stderr
        ns.start(*meshforge, "serve", str(specs), "--xds-address", f"127.0.0.1:{PORTS['serve']}",
                 "--admin-address", f"127.0.0.1:{PORTS['serve-admin']}", log="serve.log")
        ns.start(sys.executable, str(APP), "serve", str(shared / "services.json"), log="apps.log")
        for who, uid in LAPTOP_UIDS.items():
            ns.start(sys.executable, str(APP), "serve", str(shared / f"{who}.json"), user=uid, log=f"app-{who}.log")
        for name, path in (*sidecars.items(), ("edge", edge), ("tunnel", tunnel)):
            ns.start(envoy_binary(), "-c", str(path), "--log-level", "warning", "--use-dynamic-base-id",
                     "--concurrency", "1", log=f"envoy-{name}.log")
        env = Env(ns, tmp_path, shared, meshforge)
        try:
            env.wait_edge(["web", "cart", "pay"], None)
            for key in LAPTOP_UIDS:  # the tunnel node configured too: a key with no laptop yet reaches the baseline
                env.wait_edge(["web", "cart", "pay"], key)
            yield env
        finally:
            for p in env.laptops.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            for p in env.laptops.values():
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
            shutil.rmtree(shared, ignore_errors=True)
