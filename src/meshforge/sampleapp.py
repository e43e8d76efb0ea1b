"""A tiny sample service for the demo and the end-to-end tests.

An HTTP/1.1 server that answers GET with JSON: who it is (name and version), the routing key header
and the `baggage` it received, and, when it has a next hop, that hop's answer. It calls the next hop
through its own sidecar as an HTTP proxy client would, propagating `baggage` and `traceparent` the way
OpenTelemetry's default propagators do (or, to show a service that loses the key, only some of them). That is all a service has to do for service branching to work.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SampleApp:
    """GET / → JSON {"name", "key", "baggage", "hops": [...]}; with `next_hop`, calls it through `proxy`."""

    def __init__(self, name: str, next_hop: str | None = None, proxy_port: int | None = None,
                 propagate: tuple[str, ...] = ("baggage", "traceparent"),
                 baggage_out: Callable[[list[str]], str | None] | None = None, host: str = "127.0.0.1"):
        self.name, self.next_hop, self.proxy_port = name, next_hop, proxy_port
        self.host = host  # where it listens
        self.propagate = propagate  # what it passes on, as OpenTelemetry's default propagators do
        # the baggage it sends on, from the baggage headers it received (default: as received, joined);
        # tests put OpenTelemetry's own propagator here
        self.baggage_out = baggage_out or (lambda values: ",".join(values) or None)
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms Nagle stall

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

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # a short poll: shutdown() waits for it (at the default 0.5 s, each app took that long to stop)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def answer(self, headers) -> dict:
        out = {"name": self.name, "key": headers.get("x-meshforge-routing-key"),
               "baggage": headers.get_all("baggage") or []}
        if self.next_hop:
            # Propagate only what OpenTelemetry's propagators would: baggage and the trace context (a new
            # span of the same trace). Never the routing header.
            fwd = {}
            if "baggage" in self.propagate and out["baggage"]:
                sent = self.baggage_out(out["baggage"])
                if sent:
                    fwd["baggage"] = sent
            parent = headers.get("traceparent")
            if "traceparent" in self.propagate and parent and len(parent.split("-")) == 4:
                version, trace, _, flags = parent.split("-")
                fwd["traceparent"] = f"{version}-{trace}-{secrets.token_hex(8)}-{flags}"
            try:
                out["next"] = http_get(self.proxy_port, self.next_hop, fwd)
            except OSError as e:
                out["next"] = {"status": 502, "body": f"{self.next_hop}: {e}"}
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
