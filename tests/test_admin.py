"""server/admin: what the admin server can read and who may ask it."""

from __future__ import annotations

import json
import subprocess
import sys

from meshforge.emit.xds.compiler import XdsCompiler
from meshforge.emit.xds.resources import AccessLogs
from meshforge.pipeline import compile_paths
from meshforge.xdsapi import EDGE_NODE

EDGE_MESH = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging, namespace: shop}
spec:
  edge: {service: web, hosts: [shop.example.com], previewDomain: preview.example.com, trustedSources: [10.0.0.0/8]}
  services:
  - {name: web, ports: [{name: http, port: 80}], dependsOn: [api]}
  - {name: api, ports: [{name: grpc, port: 9090}], endpoints: [{address: 127.0.0.1, port: 9}]}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1, namespace: shop}
spec:
  forks: [{service: api, to: {endpoints: [{address: 127.0.0.1, port: 10}]}}]
"""


def test_debug_config_decodes_every_resource_without_the_compiler_loaded(tmp_path):
    """The admin server decodes what the cache holds in a process that has not imported the compiler: every
    message a snapshot carries, in an Any or not, is registered by the admin module itself."""
    (tmp_path / "specs.yaml").write_text(EDGE_MESH)
    model, diags = compile_paths([str(tmp_path)])
    assert model is not None, diags.items
    snap = XdsCompiler(access_logs=AccessLogs(100)).compile(model)
    dumped = [(t, r.body.hex()) for node, port in (("web.shop", 15001), (EDGE_NODE, 8080))
              for t, by_name in snap.resources(node, port).items() for r in by_name.values()]
    assert len({t for t, _ in dumped}) == 4
    (tmp_path / "resources.json").write_text(json.dumps(dumped))
    code = ("import json, sys\n"
            "from meshforge.server.admin import _decode\n"
            "assert 'meshforge.emit.xds.resources' not in sys.modules\n"
            "for t, body in json.load(open(sys.argv[1])):\n"
            "    _decode(t, bytes.fromhex(body))\n"
            "print('decoded')\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "resources.json")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "decoded", r.stderr[-2000:]


class _Running:
    """An AdminServer on an event loop of its own thread, as serve runs it on its loop."""

    def __init__(self, state=None):
        import asyncio
        import threading

        from meshforge.server.admin import AdminServer, AdminState
        from meshforge.server.cache import SnapshotCache
        from meshforge.server.metrics import Metrics

        if state is None:
            state = AdminState()
            state.cache, state.metrics = SnapshotCache(), Metrics()
        self.state = state
        self.loop = asyncio.new_event_loop()
        self.server = AdminServer(state)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def connect(self):
        import socket

        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def request(self, raw: bytes) -> bytes:
        with self.connect() as s:
            s.sendall(raw)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_requests_are_answered_on_the_loop_and_malformed_ones_refused():
    admin = _Running()
    try:
        ok = admin.request(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _status(ok) == 200 and ok.endswith(b"\r\n\r\nok\n") and b"connection: close" in ok.lower()
        assert _status(admin.request(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")) == 405
        assert _status(admin.request(b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n")) == 421
        assert _status(admin.request(b"NOT HTTP AT ALL\r\n\r\n")) == 400
        huge = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 40_000 + b"\r\n\r\n"
        assert _status(admin.request(huge)) == 431  # a head over 16 KiB (and a read) is not read on
        assert _status(admin.request(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")) == 503  # nothing loaded
    finally:
        admin.close()


def test_a_client_too_slow_to_send_its_request_is_cut_off(monkeypatch):
    """Slowloris: a request head sent a byte at a time ends at REQUEST_TIMEOUT with no answer, and holds no
    slot after it."""
    import time

    from meshforge.server import admin as admin_module

    monkeypatch.setattr(admin_module, "REQUEST_TIMEOUT", 0.5)
    admin = _Running()
    try:
        with admin.connect() as s:
            t0 = time.monotonic()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            try:
                while True:
                    s.sendall(b"s")  # still "sending headers", slowly
                    time.sleep(0.1)
                    if time.monotonic() - t0 > 5:
                        break
            except OSError:
                pass
            s.settimeout(5)
            try:
                closed = s.recv(100) == b""
            except ConnectionResetError:
                closed = True
            assert closed and 0.5 <= time.monotonic() - t0 < 5
        assert admin.server.open == 0
    finally:
        admin.close()


def test_at_most_max_connections_are_served_at_once_and_the_rest_closed(monkeypatch):
    from meshforge.server import admin as admin_module

    monkeypatch.setattr(admin_module, "MAX_CONNECTIONS", 3)
    admin = _Running()
    held = []
    try:
        for _ in range(3):
            held.append(admin.connect())
            held[-1].sendall(b"GET /healthz HTTP/1.1\r\n")  # a head begun, never finished
        import time

        deadline = time.monotonic() + 5
        while admin.server.open < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admin.server.open == 3
        with admin.connect() as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                assert extra.recv(100) == b""  # closed at once, unanswered
            except ConnectionResetError:
                pass
        assert admin.server.refused == 1
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while admin.server.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _status(admin.request(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 200
    finally:
        for s in held:
            s.close()
        admin.close()


def test_api_state_splices_the_overview_as_json_would_write_the_whole(tmp_path):
    """The dashboard's data is encoded once per configuration, in a worker thread, and spliced into
    /api/state: the text is exactly what json.dumps(sort_keys=True) writes for the decoded answer."""
    from meshforge.overview import mesh_overview
    from meshforge.server.admin import AdminState
    from meshforge.server.cache import SnapshotCache
    from meshforge.server.metrics import Metrics

    (tmp_path / "specs.yaml").write_text(EDGE_MESH)
    model, diags = compile_paths([str(tmp_path)])
    state = AdminState()
    state.cache, state.metrics, state.has_config = SnapshotCache(), Metrics(), True
    builds = []
    state.overview = lambda: builds.append(1) or mesh_overview(model)
    admin = _Running(state)
    try:
        answers = [admin.request(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(3)]
        body = answers[0].split(b"\r\n\r\n", 1)[1].decode()
        data = json.loads(body)
        assert json.dumps(data, sort_keys=True) == body
        assert data["overview"] == json.loads(json.dumps(mesh_overview(model), sort_keys=True))
        assert data["specs"]["loaded"] is True and len(builds) == 1  # built once for the three
        assert {a.split(b"\r\n\r\n", 1)[1] for a in answers} == {answers[0].split(b"\r\n\r\n", 1)[1]}
    finally:
        admin.close()
