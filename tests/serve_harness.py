"""`meshforge serve` as a real subprocess, Envoy sidecars bootstrapped against it, and a raw xDS client."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from meshforge.emit.xds.backend import dump, to_dict
from meshforge.emit.xds.bootstrap import ads_bootstrap, node_proto
from meshforge.envoyproc import Envoy, free_port, stop_process
from meshforge.xdsapi import CLUSTER_TYPE as CLUSTER  # noqa: F401  (short names for the protocol tests)
from meshforge.xdsapi import DEFAULT_OUTBOUND_PORT
from meshforge.xdsapi import ENDPOINT_TYPE as ENDPOINT  # noqa: F401
from meshforge.xdsapi import LISTENER_TYPE as LISTENER  # noqa: F401
from meshforge.xdsapi import ROUTE_TYPE as ROUTE  # noqa: F401

from .specs import sandbox


def wait_until(pred, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s (last: {last!r})")


class Server:
    def __init__(self, paths: list[str], xds_port: int | None = None, admin_port: int | None = None,
                 args: tuple[str, ...] = (), admin_ssl=None):
        self.paths = [str(p) for p in paths]
        self.args = [str(a) for a in args]
        self.admin_ssl = admin_ssl  # an ssl.SSLContext when the admin server speaks TLS
        self._picked = xds_port is None and admin_port is None  # ports chosen here may be picked again
        self.xds_port = xds_port or free_port()
        self.admin_port = admin_port or free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="meshforge-serve-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> subprocess.Popen:
        """Start serve and return at once (a benchmark times its way to /readyz)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshforge.cli", "serve", *self.paths, "--xds-address",
             f"127.0.0.1:{self.xds_port}", "--admin-address", f"127.0.0.1:{self.admin_port}", *self.args],
            stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return self.proc

    def start(self) -> "Server":
        """Start serve; when the ports were picked here (free_port) and another process took one before serve
        bound it (the suite runs on several workers), pick others and start again (serve refuses a taken
        address with exit 2 and says so)."""
        for attempt in range(3):  # noqa: B007 - read below
            self.spawn()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.get("/healthz")[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.02)
            taken = self.proc.poll() == 2 and "already in use" in self.log()
            if not (taken and self._picked and attempt < 2):
                raise TimeoutError(f"serve not healthy (exit {self.proc.poll()}): {self.log()[-2000:]}")
            self.xds_port, self.admin_port = free_port(), free_port()
        return self

    def get(self, path: str, context=None) -> tuple[int, str]:
        scheme = "https" if self.admin_ssl is not None else "http"
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{self.admin_port}{path}", timeout=2,
                                        context=context or self.admin_ssl) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + (("{" + labels) if labels else "")) and not line.startswith("#"):
                head, value = line.rsplit(" ", 1)
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_process(self.proc, grace=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Sidecar(Envoy):
    """A real Envoy bootstrapped by `meshforge bootstrap` for `service`."""

    def __init__(self, service: str, server: Server, delta: bool = False, node_id: str | None = None, tls=None):
        self.outbound = free_port()
        admin = free_port()
        boot = ads_bootstrap(service, "127.0.0.1", server.xds_port, self.outbound, admin, node_id or f"{service}-{admin}",
                             delta, tls)
        super().__init__(dump(to_dict(boot)), admin, name=f"sidecar-{service}")

    def dynamic_versions(self) -> dict[str, str]:
        """Version of each dynamic resource Envoy holds: clusters, listeners, route configurations."""
        dump_ = json.loads(self.admin("/config_dump"))
        out = {}
        for cfg in dump_["configs"]:
            for c in cfg.get("dynamic_active_clusters", []):
                out["cluster/" + c["cluster"]["name"]] = c["version_info"]
            for listener in cfg.get("dynamic_listeners", []):
                if "active_state" in listener:
                    out["listener/" + listener["name"]] = listener["active_state"]["version_info"]
            for r in cfg.get("dynamic_route_configs", []):
                out["route/" + r["route_config"]["name"]] = r["version_info"]
        return out

    def stat(self, name: str) -> int:
        for line in self.admin("/stats").splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        return 0


def node(cluster: str, node_id: str = "raw-client", port: int = DEFAULT_OUTBOUND_PORT) -> base_pb2.Node:
    return node_proto(cluster, node_id, port)


class RawClient:
    """A bare ADS stream: send requests by hand, read responses from a queue."""

    def __init__(self, port: int, delta: bool = False, credentials: grpc.ChannelCredentials | None = None,
                 own_connection: bool = False):
        # own_connection: a TCP connection of its own (channels to one target share one unless told otherwise)
        options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
        self.channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) if credentials is not None \
            else grpc.insecure_channel(f"127.0.0.1:{port}", options)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(iter(self.requests.get, None))
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for resp in self.call:
                self.responses.put(resp)
        except grpc.RpcError as e:
            self.error = e
        self.responses.put(None)

    def send(self, **kw):
        cls = discovery_pb2.DeltaDiscoveryRequest if "resource_names_subscribe" in kw or "initial_resource_versions" in kw \
            or "resource_names_unsubscribe" in kw or kw.pop("delta", False) else discovery_pb2.DiscoveryRequest
        self.requests.put(cls(**kw))

    def recv(self, timeout: float = 5.0):
        return self.responses.get(timeout=timeout)

    def nothing(self, wait: float = 0.4) -> bool:
        try:
            self.responses.get(timeout=wait)
            return False
        except queue.Empty:
            return True

    def close(self):
        self.requests.put(None)
        self.call.cancel()
        self.channel.close()


# -- a small mesh for protocol tests ---------------------------------------------------------

SPEC = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging, namespace: shop}
spec:
  services:
  - name: web
    ports: [{name: http, port: 80}]
    dependsOn: [api]
  - name: api
    ports: [{name: http, port: 80}]
    endpoints: [{address: 127.0.0.1, port: 9}]
  - name: lone
    ports: [{name: http, port: 80}]
    dependsOn: []
"""


def api_sandbox(name: str, port: int = 10) -> str:
    """A Sandbox in namespace shop forking SPEC's `api` to a local port."""
    return sandbox(name, ("api", port))


def protocol_specs(tmp_path: Path) -> Path:
    """The protocol tests' spec directory: SPEC and one sandbox, pr-1."""
    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    (d / "pr-1.yaml").write_text(api_sandbox("pr-1"))
    return d


def eds_name(key: str = "") -> str:
    return f"outbound|80|{key}|api.shop.svc.cluster.local"


class StallingClient:
    """An ADS client that asks and never takes what it is sent: HTTP/2 by hand (the h2 library), a small
    flow-control window it never opens again, so the server's response waits on its side of the socket."""

    PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

    def __init__(self, port: int, cluster: str, window: int = 16_384):
        import socket

        import h2.config
        import h2.connection
        import h2.settings

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        req = discovery_pb2.DiscoveryRequest(node=node(cluster), type_url=CLUSTER).SerializeToString()
        self.stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream, [(":method", "POST"), (":scheme", "http"), (":path", self.PATH),
                                             (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
                                             ("te", "trailers")])
        self.conn.send_data(self.stream, b"\0" + len(req).to_bytes(4, "big") + req)
        self.sock.sendall(self.conn.data_to_send())

    def ended(self, timeout: float) -> str | None:
        """Read frames (taking no data: no WINDOW_UPDATE) until the server ends the stream; its grpc-status."""
        import h2.events

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            if not data:
                return "closed"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.TrailersReceived) or \
                        isinstance(event, h2.events.ResponseReceived) and event.stream_ended:
                    return dict(event.headers).get("grpc-status")
                if isinstance(event, h2.events.StreamReset):
                    return f"reset {event.error_code}"
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        return None

    def close(self) -> None:
        self.sock.close()
