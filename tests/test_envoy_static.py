"""Envoy backend on a real Envoy: static bootstraps validate, and requests land where they should."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshforge.backends import render
from meshforge.carriers import key_from_baggage
from meshforge.diagnostics import Diagnostics
from meshforge.pipeline import compile_paths

from .conftest import BAGGAGE_TABLE, NOW
from .envoy_harness import (
    Envoy,
    GrpcBackend,
    SampleApp,
    free_port,
    grpc_ask,
    http_get,
    validate_config,
)
from .golden import cases, outputs


def test_every_golden_envoy_static_output_passes_envoy_validate(tmp_path):
    files = []
    for case in cases():
        for name, text in outputs(case).items():
            if name.startswith("envoy-static/") and name.endswith(".yaml"):
                p = tmp_path / case / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
                files.append(p)
    assert len(files) >= 20
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(validate_config, files))
    bad = [(str(f), r.stdout[-800:] + r.stderr[-800:]) for f, r in zip(files, results) if r.returncode != 0]
    assert not bad


SPEC = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  services:
  - name: client
    ports: [{{name: http, port: 80}}]
    dependsOn: [api, greeter]
  - name: api
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {v1}}}]
  - name: greeter
    ports: [{{name: grpc, port: 9090}}]
    endpoints: [{{address: 127.0.0.1, port: {g1}}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-1}}
spec:
  forks:
  - service: api
    to: {{endpoints: [{{address: 127.0.0.1, port: {v2}}}]}}
  - service: greeter
    to: {{endpoints: [{{address: 127.0.0.1, port: {g2}}}]}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-2}}
spec:
  routingKey: k7x2m9
  forks:
  - service: api
    to: {{host: localhost, port: {v3}}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: old}}
spec:
  expiresAt: "2026-11-01T00:00:00Z"
  forks:
  - service: api
    to: {{endpoints: [{{address: 127.0.0.1, port: {v4}}}]}}
"""


@contextmanager
def static_sidecar(transform=lambda config: config):
    """The backends of SPEC, and a real Envoy running the client's static bootstrap (after `transform`)."""
    with SampleApp("v1") as v1, SampleApp("v2") as v2, SampleApp("v3") as v3, SampleApp("v4") as v4, \
            GrpcBackend("g1") as g1, GrpcBackend("g2") as g2, tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC.format(v1=v1.port, v2=v2.port, v3=v3.port, v4=v4.port, g1=g1.port, g2=g2.port))
        model, diags = compile_paths([str(spec)], NOW)
        assert model is not None, diags.items
        out, admin = free_port(), free_port()
        files = render(model, "envoy-static", Diagnostics(), outbound_port=out, admin_port=admin)
        with Envoy(transform(files["client.default.yaml"]), admin) as envoy:
            yield out, envoy


@pytest.fixture(scope="module")
def mesh():
    with static_sidecar() as m:
        yield m


def who(port, headers=None, multi=None, authority="api"):
    return http_get(port, authority, headers, multi=multi)["name"]


def test_no_key_reaches_the_baseline(mesh):
    port, _ = mesh
    for authority in ("api", "api.default", "api.default.svc", "api.default.svc.cluster.local", "api:80",
                      "api.default.svc.cluster.local:80"):
        assert who(port, authority=authority) == "v1", authority


def test_header_carrier(mesh):
    port, _ = mesh
    assert who(port, {"x-meshforge-routing-key": "pr-1"}) == "v2"
    assert who(port, {"x-meshforge-routing-key": "k7x2m9"}) == "v3"
    assert who(port, {"x-meshforge-routing-key": "pr-2"}) == "v1"  # pr-2's key is k7x2m9


@pytest.mark.parametrize("values,carried", BAGGAGE_TABLE)
def test_baggage_carrier_matches_the_reference_parser(mesh, values, carried):
    port, _ = mesh
    values = [v.replace("k7x2m9", "pr-1") for v in values]
    expected = key_from_baggage(values, "meshforge-routing-key")
    got = http_get(port, "api", multi=[("baggage", v) for v in values])
    assert got["name"] == ("v2" if expected == "pr-1" else "v1"), values
    assert got["key"] == expected  # the Lua filter wrote exactly the reference parser's key


def test_plain_header_wins_over_baggage(mesh):
    port, _ = mesh
    assert who(port, {"x-meshforge-routing-key": "k7x2m9", "baggage": "meshforge-routing-key=pr-1"}) == "v3"


def test_unknown_and_expired_keys_reach_the_baseline(mesh):
    port, _ = mesh
    assert who(port, {"x-meshforge-routing-key": "nobody"}) == "v1"
    assert who(port, {"baggage": "meshforge-routing-key=old"}) == "v1"
    assert who(port, {"x-meshforge-routing-key": "old"}) == "v1"
    assert who(port, {"x-meshforge-routing-key": "Bad Key!"}) == "v1"


def test_grpc_service_forked(mesh):
    port, _ = mesh
    assert grpc_ask(port, "greeter:9090")["name"] == "g1"
    assert grpc_ask(port, "greeter:9090", [("x-meshforge-routing-key", "pr-1")])["name"] == "g2"
    assert grpc_ask(port, "greeter.default.svc.cluster.local:9090", [("baggage", "a=b, meshforge-routing-key=pr-1")])["name"] == "g2"
    assert grpc_ask(port, "greeter", [("x-meshforge-routing-key", "k7x2m9")])["name"] == "g1"


def test_out_of_scope_service_is_not_routed(mesh):
    port, envoy = mesh
    got = http_get(port, "client")  # client does not call itself: not in its scope
    assert got["status"] == 404
    assert "knows no service by the host" in got["body"] and "no_proxy" in got["body"]  # says why, and what to do
    outside = http_get(port, "api.github.com")
    assert outside["status"] == 404 and "no_proxy" in outside["body"]
    import json

    clusters = {c["name"] for c in json.loads(envoy.admin("/clusters?format=json"))["cluster_statuses"]}
    assert clusters == {"outbound|80||api.default.svc.cluster.local", "outbound|80|pr-1|api.default.svc.cluster.local",
                        "outbound|80|k7x2m9|api.default.svc.cluster.local",
                        "outbound|9090||greeter.default.svc.cluster.local",
                        "outbound|9090|pr-1|greeter.default.svc.cluster.local"}  # nothing for the expired sandbox


@pytest.mark.parametrize("values,carried", BAGGAGE_TABLE)
def test_istio_baggage_pattern_on_a_real_envoy(istio_shaped, values, carried):
    """The RE2 pattern the Istio backend emits, run by Envoy itself (multiple headers joined by ',')."""
    port, _ = istio_shaped
    values = [v.replace("k7x2m9", "pr-1") for v in values]
    got = http_get(port, "api", multi=[("baggage", v) for v in values])
    assert got["name"] == ("v2" if key_from_baggage(values, "meshforge-routing-key") == "pr-1" else "v1"), values
    assert got["key"] is None  # no Lua filter here: the regex routes alone decided


@pytest.fixture(scope="module")
def istio_shaped():
    from .envoy_harness import istio_style_routes

    with static_sidecar(istio_style_routes) as m:
        yield m


GRPC_CLIENT = """
import json, sys, grpc
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "proxy":   # what a gRPC client does with http_proxy set: CONNECT through the sidecar
    ch = grpc.insecure_channel("greeter:9090")
else:                 # the README's way: dial the outbound listener, the service in the authority
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", "greeter:9090"),
                                                             ("grpc.enable_http_proxy", 0)])
try:
    r = ch.unary_unary("/meshforge.test.Who/Ask")(b"who", metadata=[("x-meshforge-routing-key", "pr-1")], timeout=5)
    print(json.loads(r)["name"])
except grpc.RpcError as e:
    print("error", e.code().name)
"""


def test_grpc_clients_dial_the_outbound_listener_with_the_authority(mesh, tmp_path):
    """With http_proxy (or grpc_proxy) pointing at the sidecar, a gRPC client sends CONNECT, which the
    sidecar's HTTP listener does not take; the way the README documents works whatever the environment."""
    import os
    import subprocess
    import sys

    port, _ = mesh
    env = dict(os.environ, http_proxy=f"http://127.0.0.1:{port}", grpc_proxy=f"http://127.0.0.1:{port}")
    env.pop("no_proxy", None)

    def run(mode: str) -> str:
        return subprocess.run([sys.executable, "-c", GRPC_CLIENT, str(port), mode], env=env, capture_output=True,
                              text=True, timeout=30).stdout.strip()

    assert run("proxy").startswith("error")
    assert run("authority") == "g2"
