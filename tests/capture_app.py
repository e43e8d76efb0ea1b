"""Applications with no proxy settings, for the transparent-capture tests (tests/test_capture.py): run inside
a test network namespace as a user other than the sidecar's, so that their connections are captured.

    capture_app.py serve SPEC.json     # the services: HTTP/1.1 (and h2c) servers and gRPC servers, as SPEC says
    capture_app.py call http URL [HEADER=VALUE...]       # one HTTP/1.1 GET, its JSON answer on stdout
    capture_app.py call h2 URL [HEADER=VALUE...]         # the same over HTTP/2 without TLS (prior knowledge)
    capture_app.py call grpc HOST:PORT [KEY=VALUE...]    # one unary gRPC call, metadata KEY=VALUE
    capture_app.py call proxy HOST:PORT URL [HEADER=VALUE...]   # one GET through the HTTP proxy at HOST:PORT
    capture_app.py call tcp HOST:PORT                    # a raw TCP exchange: sends "ping", prints what came back
    capture_app.py load URL PROXY STOPFILE [HEADER=VALUE...]  # GETs one after another through the HTTP proxy
                                                             # PROXY until STOPFILE exists: a JSON summary
                                                             # (statuses, hop paths, p50/p90/p99 ms) on stdout

A server with "proxy": "HOST:PORT" calls its next hop through that HTTP proxy (a sidecar) instead of directly.

Every server answers who it is, the routing key header and the baggage it received and, when it has a next
hop, that hop's answer: it calls the next hop by name, directly (no proxy: the capture rules take it), and
passes the baggage on as OpenTelemetry would.
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import sys
import threading
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

METHOD = "/meshforge.test.Echo/Who"


def http_call(url: str, headers: dict[str, str], proxy: str | None = None) -> dict:
    u = urllib.parse.urlsplit(url)
    if proxy:
        host, port = proxy.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    try:
        conn.request("GET", url if proxy else (u.path or "/"), headers=headers)
        r = conn.getresponse()
        body = r.read()
        try:
            return {"status": r.status, **json.loads(body)}
        except ValueError:
            return {"status": r.status, "body": body.decode(errors="replace")}
    finally:
        conn.close()


def h2_call(url: str, headers: dict[str, str]) -> dict:
    """GET over HTTP/2 with prior knowledge (h2c), with the h2 library: no upgrade, no TLS."""
    import h2.config
    import h2.connection
    import h2.events

    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port or 80), timeout=10) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", u.netloc),
                              (":path", u.path or "/"), *headers.items()], end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = None, b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return {"status": status, "http_version": "HTTP/2", **json.loads(body)}
            sock.sendall(conn.data_to_send())
    raise OSError("the connection closed before the response ended")


def grpc_call(target: str, metadata: dict[str, str]) -> dict:
    with grpc.insecure_channel(target) as ch:
        answer = ch.unary_unary(METHOD)(b"", metadata=tuple(metadata.items()), timeout=10)
        return json.loads(answer)


def serve(spec: dict) -> None:
    stop = threading.Event()
    servers = []  # a gRPC server that is garbage collected stops
    for s in spec["services"]:
        if s["kind"] == "http":
            _http_server(s)
        elif s["kind"] == "grpc":
            server = grpc.server(futures.ThreadPoolExecutor(4))
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("meshforge.test.Echo", {
                "Who": grpc.unary_unary_rpc_method_handler(_grpc_who(s))})])
            if server.add_insecure_port(f"{s['address']}:{s['port']}") == 0:
                raise SystemExit(f"cannot listen on {s['address']}:{s['port']}")
            server.start()
            servers.append(server)
        elif s["kind"] == "tcp":
            _tcp_server(s)
    print("ready", flush=True)
    stop.wait()


def _grpc_who(s: dict):
    def who(request: bytes, context) -> bytes:
        md = dict(context.invocation_metadata())
        return json.dumps({"name": s["name"], "key": md.get("x-meshforge-routing-key"),
                           "baggage": [md["baggage"]] if "baggage" in md else []}).encode()
    return who


def _http_server(s: dict) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms Nagle stall

        def do_GET(self):
            out = {"name": s["name"], "key": self.headers.get("x-meshforge-routing-key"),
                   "baggage": self.headers.get_all("baggage") or []}
            if s.get("next"):
                fwd = {"baggage": ",".join(out["baggage"])} if out["baggage"] else {}
                try:
                    out["next"] = http_call(s["next"], fwd, s.get("proxy"))
                except (OSError, http.client.HTTPException) as e:  # unreachable, or an answer cut off mid-body
                    out["next"] = {"status": 502, "error": f"{type(e).__name__}: {e}"}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((s["address"], s["port"]), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _tcp_server(s: dict) -> None:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            data = self.request.recv(100)
            self.request.sendall(f"{s['name']}:{data.decode()}".encode())

    server = socketserver.ThreadingTCPServer((s["address"], s["port"]), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


def load(url: str, proxy: str, stopfile: str, headers: dict[str, str]) -> dict:
    """Requests one after another until `stopfile` exists: how many got each status, and each answer's hop names
    in order of first appearance (with the time it first appeared, seconds since the start)."""
    import os
    import time

    start = time.monotonic()
    statuses: dict[str, int] = {}
    seen: dict[str, float] = {}
    took: list[float] = []
    failures: list[dict] = []
    cuts = 0  # answers a hop got cut off mid-body (its upstream went away after it had begun to answer)
    hop_errors = 0  # answers in which some hop's call failed (cut off ones included)
    while not os.path.exists(stopfile):
        t0 = time.perf_counter()
        try:
            answer = http_call(url, headers, proxy)
        except OSError as e:
            answer = {"status": f"error: {e}"}
        took.append((time.perf_counter() - t0) * 1000)
        statuses[str(answer.get("status"))] = statuses.get(str(answer.get("status")), 0) + 1
        hops, a, cut, hop_error = [], answer, False, False
        while a:
            hops.append(a.get("name") or f"HTTP {a.get('status')}")
            cut |= str(a.get("error", "")).startswith("IncompleteRead")
            hop_error |= "error" in a  # a hop's call failed (refused, reset, closed without an answer, cut off)
            a = a.get("next")
        cuts += cut
        hop_errors += hop_error
        if (answer.get("status") != 200 or hop_error) and len(failures) < 5:  # what answered otherwise, in full
            failures.append({"at": round(time.monotonic() - start, 3), "answer": str(answer)[:300]})
        seen.setdefault(">".join(hops), round(time.monotonic() - start, 3))
    took.sort()
    at = {q: round(took[min(len(took) - 1, int(q / 100 * len(took)))], 3) if took else None for q in (50, 90, 99)}
    return {"statuses": statuses, "paths": seen, "requests": len(took), "ms": at, "failures": failures, "cut": cuts,
            "hop_errors": hop_errors}


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        with open(argv[1]) as f:
            serve(json.load(f))
        return
    if argv[0] == "load":
        url, proxy, stopfile, *pairs = argv[1:]
        print(json.dumps(load(url, proxy, stopfile, dict(p.split("=", 1) for p in pairs))))
        return
    mode, target, *pairs = argv[1:]
    proxy = None
    if mode == "proxy":  # call proxy HOST:PORT URL [HEADER=VALUE...]: through an HTTP proxy (a sidecar, the edge)
        proxy, target, *pairs = target, *pairs
    extra = dict(p.split("=", 1) for p in pairs)
    if mode in ("http", "proxy"):
        out = http_call(target, extra, proxy)
    elif mode == "h2":
        out = h2_call(target, extra)
    elif mode == "grpc":
        out = grpc_call(target, extra)
    else:
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as c:
            c.sendall(b"ping")
            out = {"answer": c.recv(100).decode()}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
