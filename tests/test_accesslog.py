"""The request log behind doctor and the dashboard: bounded per key, per number of keys and in total."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import pytest

from meshforge.emit.xds.resources import UNLOGGED_HEADER
from meshforge.server.accesslog import RequestLog, trace_id

from .envoy_harness import SampleApp, http_get
from .serve_harness import Server, Sidecar, wait_until


def entry(i: int, key: str | None, trace: str | None = None, node: str = "a.ns", service: str = "b.ns") -> tuple:
    """A stored row: (time, node, request id, trace id, key, cluster, authority, path, status, duration)."""
    name, ns = service.split(".")
    return (float(i), node, str(i), trace, key, f"outbound|80|{key or ''}|{name}.{ns}.svc.cluster.local", name, "/",
            200, 1.0)


def test_memory_is_bounded_per_key_per_number_of_keys_and_in_total():
    log = RequestLog(per_key=5, total=50, max_keys=3, known=lambda k: k in {"k0", "k1", "k2", "k3"})
    for i in range(1000):
        log.add(entry(i, f"k{i % 7}" if i % 3 else None))
    assert log.rows() <= 50 and len(log.recent(10_000)) == log.rows() and log.received == 1000
    keys = log.keys()
    assert len([k for k in keys if k in {"k0", "k1", "k2", "k3"}]) <= 3 and all(n <= 5 for n in keys.values())
    assert len([k for k in keys if k not in {"k0", "k1", "k2", "k3"}]) <= 1  # a tenth as many unknown keys


def test_a_flood_of_made_up_keys_keeps_the_bound_and_the_real_key():
    """1,000 keys x 200 entries on one stream (the attack seen): the log stays within `total` rows, and the
    rows of the key an active sandbox has survive it."""
    log = RequestLog(known=lambda k: k == "real")
    t = "4bf92f3577b34da6a3ce929d0e0e4736"
    for i in range(100):
        log.add(entry(i, "real", t, "web.ns", "cart.ns"))
    log.add(entry(100, None, t, "cart.ns", "pay.ns"))
    for i in range(200_000):
        log.add(entry(1000 + i, f"fake-{i % 1000}"))
    assert log.rows() <= log.total and len(log.keys()) <= log.max_keys + log.max_unknown_keys
    real = log.for_key("real")
    assert len([r for r in real if r["key"] == "real"]) == 100
    assert any(r["service"] == "pay.ns" and r["key"] is None for r in real)  # its trace's other hop too
    assert sum(n for k, n in log.keys().items() if k.startswith("fake-")) <= log.limits["unknown"]


def test_for_key_adds_the_other_hops_of_its_traces():
    log = RequestLog()
    t1, t2 = "4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4736"
    log.add(entry(1, "k", t1, "web.ns", "cart.ns"))
    log.add(entry(2, None, t1, "cart.ns", "pay.ns"))
    log.add(entry(3, None, t2, "cart.ns", "pay.ns"))  # another trace: not related
    got = log.for_key("k")
    assert [(e["requestId"], e["service"], e["version"], e["traceId"]) for e in got] == [
        ("1", "cart.ns", "k", t1), ("2", "pay.ns", "baseline", t1)]
    assert log.for_key("nobody") == []


def test_trace_id_of_traceparent():
    assert trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01"):
        assert trace_id(bad) is None


# -- the log budget, with real Envoy sidecars ----------------------------------------------------------

BUDGET_SPECS = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: shop}}
spec:
  services:
  - {{name: web, ports: [{{name: http, port: 80}}], dependsOn: [api]}}
  - {{name: api, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: {api}}}]}}
"""


@pytest.mark.parametrize("rate", [5, 0], ids=["budget-5", "every-request"])
def test_a_proxy_logs_at_most_its_budget_and_a_caller_cannot_opt_out(tmp_path, rate):
    """With `--access-log-rate 5` a burst of 40 keyed requests is served in full but at most the budget (plus
    what refilled meanwhile) is logged; a request that arrives with the budget's marker header is logged
    anyway (callers' markers are removed). With 0 every keyed request is logged."""
    d = tmp_path / "specs"
    d.mkdir()
    with ExitStack() as stack:
        api = stack.enter_context(SampleApp("api-v1"))
        (d / "specs.yaml").write_text(BUDGET_SPECS.format(api=api.port))
        server = stack.enter_context(Server([d], args=("--access-log-rate", str(rate))))
        port = stack.enter_context(Sidecar("web.shop", server)).outbound
        wait_until(lambda: http_get(port, "api").get("name") == "api-v1", 20, what="sidecar configured")

        def logged(key):
            return [r for r in json.loads(server.get(f"/api/requests?key={key}")[1])["requests"] if r["key"] == key]

        answers = [http_get(port, "api", {"x-meshforge-routing-key": "burst"}) for _ in range(40)]
        assert all(a.get("name") == "api-v1" for a in answers)  # the budget never refuses a request
        if rate:
            time.sleep(1.5)  # a flush (200 ms) and a refill later
            n = len(logged("burst"))
            assert rate <= n <= 3 * rate, n
            http_get(port, "api", {"x-meshforge-routing-key": "forged", UNLOGGED_HEADER: "budget"})
            wait_until(lambda: len(logged("forged")) == 1, 10, what="the request with a forged marker logged")
        else:
            wait_until(lambda: len(logged("burst")) == 40, 10, what="every request logged")
