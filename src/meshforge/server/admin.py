"""Admin HTTP: the dashboard (/), its data (/api/state, /api/requests?key=K), /healthz, /readyz, /metrics
(Prometheus), /debug/config?node=NAME.NAMESPACE[&port=P].

Runs on serve's event loop: asyncio's streams (and its TLS), HTTP/1.1 read and written by h11 (a maintained
sans-I/O implementation: no parsing of our own). One request per connection, at most MAX_CONNECTIONS at once
(more are closed at once), REQUEST_TIMEOUT for the TLS handshake, for the request's head to arrive (a client
sending its headers a byte at a time is cut off) and for the answer to be taken. Handlers read what the loop
keeps (the request log, the connected proxies, the specs' state) on the loop, without locks; what costs more
than a moment runs in a worker thread over values nothing changes (a snapshot's resources decoded for
/debug/config, the dashboard's data built and encoded once per configuration), so the loop keeps answering
proxies meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import ssl
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

import h11
from google.protobuf import json_format, symbol_database
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..xdsapi import DEFAULT_OUTBOUND_PORT, MESSAGE_MODULES, is_ip, outbound_port, printable, valid_routing_key
from .dashboard import PAGE
from .tls import may_ask_for, ssl_peer_names

log = logging.getLogger("meshforge.admin")

for _module in MESSAGE_MODULES:  # every message a snapshot carries, registered to be decoded (xdsapi)
    importlib.import_module(_module)

REQUEST_TIMEOUT = 10.0  # seconds for a TLS handshake, a request's head, an answer to be taken
MAX_CONNECTIONS = 64  # admin clients at once; more are closed at once
MAX_HEAD_BYTES = 16 * 1024  # a request line and headers at most (h11's bound on an incomplete event)
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


class AdminState:
    """What the admin endpoints report; written by the reload loop, read on it."""

    def __init__(self) -> None:
        self.has_config = False
        self.errors: list[str] = []  # rendered diagnostics of the specs on disk, when invalid
        self.vanished: list[str] = []  # watched paths that do not exist now
        self.cache = None
        self.metrics = None
        self.mutual_tls = False  # /debug/config only for a client certificate naming the node
        self.rejections = None  # callable: {node: "TYPE: message"} for proxies rejecting what they were sent
        self.overview = None  # () -> the mesh as the dashboard shows it (from the last valid compile), or None
        self._overview: tuple | None = None  # (the callable, a task building its result, encoded)
        self.requests = None  # accesslog.RequestLog
        self.proxies = None  # callable: [{node, id, kind, versions, rejected}] of the connected proxies
        self.access_log_rate: int | None = 0  # logged requests a second per listener (0: all); None: logs off
        self.hosts: frozenset[str] = frozenset()  # Host names the admin server answers to, beside IPs and localhost
        self.operators: frozenset[str] = frozenset()  # under mutual TLS: SANs that may read / and /api/

    async def current_overview(self) -> str:
        """The dashboard's data for the current configuration as JSON ("null" before one), built and encoded
        once per configuration, in a worker thread (at 10,000 services it takes longer than a proxy should
        wait for the loop)."""
        build = self.overview
        if build is None:
            return "null"
        cached = self._overview
        if cached is None or cached[0] is not build:
            task = asyncio.ensure_future(asyncio.to_thread(lambda: json.dumps(build(), sort_keys=True)))
            cached = self._overview = (build, task)
        return await asyncio.shield(cached[1])


def _decode(type_url: str, body: bytes) -> dict:
    name = type_url.split("/", 1)[1]
    cls = symbol_database.Default().GetSymbol(name)
    return json.loads(json_format.MessageToJson(cls.FromString(body), preserving_proto_field_name=True))


def _debug_config(node: str, generation: int, resources: dict) -> str:
    """/debug/config's answer: every resource of one node decoded (a worker thread's job: bytes in, text out)."""
    out = {"node": node, "generation": generation, "resources": {
        t.rsplit(".", 1)[1]: [{"name": n, "version": r.version, "resource": _decode(t, r.body)}
                              for n, r in sorted(v.items())] for t, v in resources.items()}}
    return json.dumps(out, indent=2, sort_keys=True)


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


class _Refusal(Exception):
    """An answer decided early (a refusal): raised out of the routing, written like any other."""

    def __init__(self, status: int, body: str, ctype: str = _TEXT):
        super().__init__(status)
        self.status, self.body, self.ctype = status, body, ctype


def _json_object(parts: dict[str, str]) -> str:
    """An object from members already encoded: what json.dumps(..., sort_keys=True) writes for the decoded
    whole (the dashboard's data is encoded once per configuration, in a thread, and spliced in)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in sorted(parts.items())) + "}"


class AdminServer:
    """The admin endpoints on the running event loop (see the module docstring)."""

    def __init__(self, state: AdminState, tls: ssl.SSLContext | None = None) -> None:
        self.state, self.tls = state, tls
        self.open = 0  # connections being served
        self.refused = 0  # connections closed at once: MAX_CONNECTIONS were open
        self.server: asyncio.AbstractServer | None = None
        if tls is not None:
            state.mutual_tls = tls.verify_mode != ssl.CERT_NONE

    async def start(self, host: str, port: int) -> int:
        """Listen; the port bound (`port` 0: one the system picks)."""
        self.server = await asyncio.start_server(self._connection, host, port, ssl=self.tls, backlog=64,
                                                 ssl_handshake_timeout=REQUEST_TIMEOUT if self.tls else None)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= MAX_CONNECTIONS:
            self.refused += 1
            writer.transport.abort()
            return
        self.open += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    request = await _read_head(reader, conn)
            except TimeoutError:
                return  # too slow to say what it wants: closed without an answer
            except h11.RemoteProtocolError as e:
                status, body, ctype = e.error_status_hint, f"bad request: {e}\n", _TEXT
            else:
                if request is None:
                    return  # closed before a whole request
                try:
                    status, body, ctype = await self._answer(request, writer.get_extra_info("peercert"))
                except _Refusal as a:
                    status, body, ctype = a.status, a.body, a.ctype
                except Exception:  # a bug answers 500 and is logged; serving goes on
                    log.exception("admin: %s failed", request.target[:200])
                    status, body, ctype = 500, "internal error (logged by serve)\n", _TEXT
            await self._write(conn, writer, status, body, ctype)
        except (OSError, ssl.SSLError, h11.LocalProtocolError) as e:
            log.debug("admin: connection ended: %s", e)
        finally:
            self.open -= 1
            writer.close()

    async def _write(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: str,
                     ctype: str) -> None:
        data = body.encode()
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        writer.write(conn.send(h11.Response(status_code=status, reason=HTTPStatus(status).phrase, headers=[
            ("content-type", ctype), ("content-length", str(len(data))), ("connection", "close")])))
        writer.write(conn.send(h11.Data(data=data)))  # written apart: a 79 MB /debug/config is not copied again
        writer.write(conn.send(h11.EndOfMessage()))
        # the answer taken within the timeout, plus a second per MB: a large answer to a client that reads
        # slowly but steadily still arrives
        limit = REQUEST_TIMEOUT + len(data) / 1e6
        try:
            async with asyncio.timeout(limit):
                await writer.drain()
        except TimeoutError:
            log.debug("admin: an answer of %d bytes was not taken in %.0f s", len(data), limit)

    async def _answer(self, request: h11.Request, peercert: dict | None) -> tuple[int, str, str]:
        state = self.state
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
        url = urlparse(request.target.decode("latin-1"))
        if request.method != b"GET":
            raise _Refusal(405, "method not allowed: the admin endpoints answer GET\n")
        if not host_allowed(headers.get("host"), state.hosts):
            raise _Refusal(421, f"misdirected request: this admin server does not answer to host "
                          f"{printable(headers.get('host') or '')!r} (it answers to IP addresses, "
                          "localhost and the names serve --admin-host gives)\n")
        names = ssl_peer_names(peercert)
        if url.path == "/" or url.path.startswith("/api/"):
            return await self._api(url, names)
        if url.path == "/healthz":
            return 200, "ok\n", _TEXT
        if url.path == "/readyz":
            return self._readyz()
        if url.path == "/metrics":
            return 200, generate_latest(state.metrics.registry).decode(), CONTENT_TYPE_LATEST
        if url.path == "/debug/config":
            return await self._debug_config(url, names)
        return 404, ("not found: / /api/state /api/requests?key=KEY /healthz /readyz /metrics "
                     "/debug/config?node=NAME.NAMESPACE\n"), _TEXT

    def _readyz(self) -> tuple[int, str, str]:
        state = self.state
        # a diagnostic keeps its lines; a file name or message in it shows no control character raw
        errors = ["\n".join(map(printable, e.splitlines())) for e in state.errors]
        rejecting = state.rejections() if state.rejections else {}
        notes = [f"watched path missing: {printable(p)}" for p in state.vanished]
        notes += [f"proxy {printable(n)} rejected its configuration: {printable(why)}"
                  for n, why in sorted(rejecting.items())]
        if not state.has_config:
            return 503, "\n".join(["not ready: no valid configuration loaded yet", *errors, *notes]) + "\n", _TEXT
        head = "ready"
        if errors:
            head = "ready, serving the last good configuration; the specs on disk are invalid:"
        elif notes:
            head = "ready, with problems:"
        return 200, "\n".join([head, *errors, *notes]) + "\n", _TEXT

    async def _api(self, url, names: set[str]) -> tuple[int, str, str]:
        state = self.state
        if state.mutual_tls and not state.operators & names:
            raise _Refusal(403, "forbidden: under mutual TLS the dashboard and /api/ need an operator's client "
                          "certificate (one whose DNS or URI SAN serve --admin-operator names); a proxy's "
                          "certificate reads only /debug/config of its own node\n")
        q = parse_qs(url.query)
        if url.path == "/":
            return 200, PAGE, "text/html; charset=utf-8"
        if url.path == "/api/state":
            store, cache = state.requests, state.cache
            specs = {"valid": not state.errors, "errors": list(state.errors), "vanished": list(state.vanished),
                     "loaded": state.has_config}
            logs = {"enabled": state.access_log_rate is not None, "ratePerSecond": state.access_log_rate or None,
                    "received": store.received if store else 0, "rows": store.rows() if store else 0,
                    "capacity": store.total if store else 0}
            parts = {"generation": json.dumps(cache.generation if cache else 0),
                     "specs": json.dumps(specs, sort_keys=True), "accessLogs": json.dumps(logs, sort_keys=True),
                     "proxies": json.dumps(state.proxies() if state.proxies else [], sort_keys=True),
                     "requestsByKey": json.dumps(store.keys() if store else {}, sort_keys=True)}
            parts["overview"] = await state.current_overview()
            return 200, _json_object(parts), _JSON
        if url.path == "/api/requests":
            key = (q.get("key") or [None])[0]
            store = state.requests
            if key is None:
                try:
                    limit = int((q.get("limit") or ["100"])[0])
                except ValueError:
                    limit = 0
                if not 1 <= limit <= 1000:
                    raise _Refusal(400, "bad limit parameter: a number from 1 to 1000\n")
                return 200, json.dumps({"key": None, "requests": store.recent(limit) if store else []},
                                       sort_keys=True), _JSON
            if not valid_routing_key(key):
                raise _Refusal(400, "bad key parameter: not a routing key\n")
            return 200, json.dumps({"key": key, "requests": store.for_key(key) if store else []}, sort_keys=True), _JSON
        return 404, "not found: / /api/state /api/requests?key=KEY\n", _TEXT

    async def _debug_config(self, url, names: set[str]) -> tuple[int, str, str]:
        state = self.state
        q = parse_qs(url.query)
        node = (q.get("node") or [""])[0]
        try:
            port = outbound_port((q.get("port") or [str(DEFAULT_OUTBOUND_PORT)])[0])
        except ValueError as e:
            raise _Refusal(400, f"bad port parameter: {e}\n") from None
        if len(node) > 253:
            raise _Refusal(400, "bad node parameter: longer than 253 characters\n")
        if state.mutual_tls and not state.operators & names and not may_ask_for(node, names):
            raise _Refusal(403, f"forbidden: /debug/config?node={printable(node)} needs a client certificate "
                          "that names that service, or an operator's\n")
        cache = state.cache
        if not node or cache is None or not cache.known_node(node):
            known = sorted(cache.snapshot.nodes) if cache is not None and cache.snapshot else []
            return 404, json.dumps({"error": f"unknown node {node!r}", "nodes": known}, indent=2), _JSON
        resources = cache.resources(node, port)  # the current snapshot's: nothing changes them
        return 200, await asyncio.to_thread(_debug_config, node, cache.generation, resources), _JSON


async def _read_head(reader: asyncio.StreamReader, conn: h11.Connection) -> h11.Request | None:
    """The request line and headers (a GET has no body to wait for); None when the client closed first."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(8192))
            continue
        if isinstance(event, h11.Request):
            return event
        if isinstance(event, h11.ConnectionClosed):
            return None
