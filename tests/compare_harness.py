"""Two versions of a real service behind meshforge's static Envoy sidecar, for the tests of `meshforge compare`
(tests/test_compare.py) and of the CI example's PR gate (tests/test_ci_example.py)."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from meshforge.backends import render
from meshforge.diagnostics import Diagnostics
from meshforge.envoyproc import Envoy, free_port
from meshforge.pipeline import compile_paths

from .conftest import NOW

SPEC = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  services:
  - name: client
    ports: [{{name: http, port: 80}}]
    dependsOn: [api]
  - name: api
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {v1}}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: {key}}}
spec:
  forks:
  - service: api
    to: {{endpoints: [{{address: 127.0.0.1, port: {v2}}}]}}
"""

class Version:
    """The api service: v1, or v2 with its changes and 30 ms slower."""

    def __init__(self, v2: bool):
        version = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self, status: int, body: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if v2:
                    time.sleep(0.03)
                volatile = {"id": str(uuid.uuid4()), "ts": time.time()}
                if self.path == "/user":
                    user = {"fullName": "Ana", "age": "30", "tier": "gold"} if v2 else {"name": "Ana", "age": 30}
                    return self._answer(200, json.dumps({**volatile, "user": user, "items": [1, 2, 3]}).encode())
                if self.path == "/same":
                    return self._answer(200, json.dumps({**volatile, "ok": True, "list": [{"n": 1}]}).encode())
                if self.path == "/health":
                    return self._answer(200, b"ok\n", "text/plain")
                if self.path == "/orders":
                    if v2:
                        return self._answer(500, b'{"error": "boom"}')
                    return self._answer(200, json.dumps({"orders": [1, 2], **volatile}).encode())
                self._answer(404, b"{}")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                qty = json.loads(body)["qty"]
                self._answer(200, json.dumps({"qty": qty, "total": qty * (11 if v2 else 10)}).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        self.version = version

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def sidecar(key: str = "pr-1"):
    """The sidecar's outbound port; the sandbox `key` forks api to v2."""
    v1, v2 = Version(False), Version(True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "spec.yaml"
            spec.write_text(SPEC.format(v1=v1.port, v2=v2.port, key=key))
            model, diags = compile_paths([str(spec)], NOW)
            assert model is not None, diags.items
            out, admin = free_port(), free_port()
            files = render(model, "envoy-static", Diagnostics(), outbound_port=out, admin_port=admin)
            with Envoy(files["client.default.yaml"], admin):
                yield out
    finally:
        v1.close()
        v2.close()


