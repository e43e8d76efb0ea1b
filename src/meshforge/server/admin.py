"""Admin HTTP: the dashboard (/), its data (/api/state, /api/requests?key=K), /healthz, /readyz, /metrics
(Prometheus), /debug/config?node=NAME.NAMESPACE[&port=P].

Runs in its own thread (http.server), reading state the event loop publishes; it never blocks it.
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from google.protobuf import json_format, symbol_database
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..xdsapi import DEFAULT_OUTBOUND_PORT, MESSAGE_MODULES, is_ip, outbound_port, printable, valid_routing_key
from .dashboard import PAGE
from .tls import may_ask_for, ssl_peer_names

log = logging.getLogger("meshforge.admin")

for _module in MESSAGE_MODULES:  # every message a snapshot carries, registered to be decoded (xdsapi)
    importlib.import_module(_module)

REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 64  # admin clients at once; more are closed at once


class AdminState:
    """What the admin endpoints report; written by the reload loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.has_config = False
        self.errors: list[str] = []  # rendered diagnostics of the specs on disk, when invalid
        self.vanished: list[str] = []  # watched paths that do not exist now
        self.cache = None
        self.metrics = None
        self.mutual_tls = False  # /debug/config only for a client certificate naming the node
        self.rejections = None  # callable: {node: "TYPE: message"} for proxies rejecting what they were sent
        self.overview = None  # () -> the mesh as the dashboard shows it (from the last valid compile), or None
        self._overview_cache: tuple | None = None  # (the callable, its result)
        self.requests = None  # accesslog.RequestLog
        self.proxies = None  # callable: [{node, id, kind, versions, rejected}] of the connected proxies
        self.access_log_rate: int | None = 0  # logged requests a second per listener (0: all); None: logs off
        self.hosts: frozenset[str] = frozenset()  # Host names the admin server answers to, beside IPs and localhost
        self.operators: frozenset[str] = frozenset()  # under mutual TLS: SANs that may read / and /api/


    def current_overview(self) -> dict | None:
        """The dashboard's data for the current configuration, built once per configuration."""
        with self.lock:
            build, cached = self.overview, self._overview_cache
            if build is None:
                return None
            if cached is not None and cached[0] is build:
                return cached[1]
            data = build()
            self._overview_cache = (build, data)
            return data


def _decode(type_url: str, body: bytes) -> dict:
    name = type_url.split("/", 1)[1]
    cls = symbol_database.Default().GetSymbol(name)
    return json.loads(json_format.MessageToJson(cls.FromString(body), preserving_proto_field_name=True))


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's Host names this server: an IP address (a page that rebinds a DNS name to a local
    address still sends its own name), localhost, or a name the operator configured (`--admin-host`)."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    return is_ip(name) or name == "localhost" or name in allowed


def make_handler(state: AdminState):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _json(self, data) -> None:
            self._send(200, json.dumps(data, sort_keys=True), "application/json")

        def _operator(self) -> bool:
            return bool(state.operators & ssl_peer_names(self.connection.getpeercert()))

        def _api(self, url) -> None:
            if state.mutual_tls and not self._operator():
                return self._send(403, "forbidden: under mutual TLS the dashboard and /api/ need an operator's "
                                  "client certificate (one whose DNS or URI SAN serve --admin-operator names); a "
                                  "proxy's certificate reads only /debug/config of its own node\n")
            q = parse_qs(url.query)
            if url.path == "/":
                return self._send(200, PAGE, "text/html; charset=utf-8")
            if url.path == "/api/state":
                overview = state.current_overview()
                cache = state.cache
                with state.lock:
                    specs = {"valid": not state.errors, "errors": list(state.errors), "vanished": list(state.vanished),
                             "loaded": state.has_config}
                store = state.requests
                logs = {"enabled": state.access_log_rate is not None, "ratePerSecond": state.access_log_rate or None,
                        "received": store.received if store else 0, "rows": store.rows() if store else 0,
                        "capacity": store.total if store else 0}
                return self._json({"generation": cache.generation if cache else 0, "overview": overview,
                                   "specs": specs, "accessLogs": logs,
                                   "proxies": state.proxies() if state.proxies else [],
                                   "requestsByKey": state.requests.keys() if state.requests else {}})
            if url.path == "/api/requests":
                key = (q.get("key") or [None])[0]
                store = state.requests
                if key is None:
                    try:
                        limit = int((q.get("limit") or ["100"])[0])
                    except ValueError:
                        limit = 0
                    if not 1 <= limit <= 1000:
                        return self._send(400, "bad limit parameter: a number from 1 to 1000\n")
                    return self._json({"key": None, "requests": store.recent(limit) if store else []})
                if not valid_routing_key(key):
                    return self._send(400, "bad key parameter: not a routing key\n")
                return self._json({"key": key, "requests": store.for_key(key) if store else []})
            return self._send(404, "not found: / /api/state /api/requests?key=KEY\n")

        def do_GET(self):
            url = urlparse(self.path)
            if not host_allowed(self.headers.get("host"), state.hosts):
                return self._send(421, f"misdirected request: this admin server does not answer to host "
                                  f"{printable(self.headers.get('host') or '')!r} (it answers to IP addresses, "
                                  "localhost and the names serve --admin-host gives)\n")
            if url.path == "/" or url.path.startswith("/api/"):
                return self._api(url)
            if url.path == "/healthz":
                return self._send(200, "ok\n")
            if url.path == "/readyz":
                with state.lock:
                    has, vanished = state.has_config, list(state.vanished)
                    # a diagnostic keeps its lines; a file name or message in it shows no control character raw
                    errors = ["\n".join(map(printable, e.splitlines())) for e in state.errors]
                rejecting = state.rejections() if state.rejections else {}
                notes = [f"watched path missing: {printable(p)}" for p in vanished]
                notes += [f"proxy {printable(n)} rejected its configuration: {printable(why)}"
                          for n, why in sorted(rejecting.items())]
                if not has:
                    return self._send(503, "\n".join(["not ready: no valid configuration loaded yet", *errors,
                                                      *notes]) + "\n")
                head = "ready"
                if errors:
                    head = "ready, serving the last good configuration; the specs on disk are invalid:"
                elif notes:
                    head = "ready, with problems:"
                return self._send(200, "\n".join([head, *errors, *notes]) + "\n")
            if url.path == "/metrics":
                return self._send(200, generate_latest(state.metrics.registry).decode(), CONTENT_TYPE_LATEST)
            if url.path == "/debug/config":
                q = parse_qs(url.query)
                node = (q.get("node") or [""])[0]
                try:
                    port = outbound_port((q.get("port") or [str(DEFAULT_OUTBOUND_PORT)])[0])
                except ValueError as e:
                    return self._send(400, f"bad port parameter: {e}\n")
                if len(node) > 253:
                    return self._send(400, "bad node parameter: longer than 253 characters\n")
                if state.mutual_tls and not self._operator() and \
                        not may_ask_for(node, ssl_peer_names(self.connection.getpeercert())):
                    return self._send(403, f"forbidden: /debug/config?node={printable(node)} needs a client "
                                      "certificate that names that service, or an operator's\n")
                cache = state.cache
                if not node or cache is None or not cache.known_node(node):
                    known = sorted(cache.snapshot.nodes) if cache is not None and cache.snapshot else []
                    return self._send(404, json.dumps({"error": f"unknown node {node!r}", "nodes": known}, indent=2),
                                      "application/json")
                res = cache.resources(node, port)
                out = {"node": node, "generation": cache.generation, "resources": {
                    t.rsplit(".", 1)[1]: [{"name": n, "version": r.version, "resource": _decode(t, r.body)}
                                          for n, r in sorted(v.items())] for t, v in res.items()}}
                return self._send(200, json.dumps(out, indent=2, sort_keys=True), "application/json")
            return self._send(404, "not found: / /api/state /api/requests?key=KEY /healthz /readyz /metrics "
                              "/debug/config?node=NAME.NAMESPACE\n")

        def log_message(self, fmt, *args):
            log.debug("admin: " + fmt, *args)

        timeout = REQUEST_TIMEOUT  # seconds a client may take to send its request

    return Handler


class _Server(ThreadingHTTPServer):
    """Threads per request, at most MAX_CONNECTIONS at once: a flood of slow clients cannot exhaust the server."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request, client_address):
        log.debug("admin: a request from %s failed", client_address, exc_info=True)

    def process_request_thread(self, request, client_address):
        try:
            if isinstance(request, ssl.SSLSocket):  # the handshake here, not in the accepting thread
                request.settimeout(REQUEST_TIMEOUT)
                try:
                    request.do_handshake()
                except (ssl.SSLError, OSError):
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


def start_admin(host: str, port: int, state: AdminState, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = (_Server6 if ":" in host else _Server)((host, port), make_handler(state))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        state.mutual_tls = tls.verify_mode != ssl.CERT_NONE
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="meshforge-admin", daemon=True).start()
    return server
