"""The request log behind doctor and the dashboard: bounded per key, per number of keys and in total."""

from __future__ import annotations

from meshforge.server.accesslog import RequestLog, trace_id


def entry(i: int, key: str | None, trace: str | None = None, node: str = "a.ns", service: str = "b.ns") -> tuple:
    """A stored row: (time, node, request id, trace id, key, cluster, authority, path, status, duration)."""
    name, ns = service.split(".")
    return (float(i), node, str(i), trace, key, f"outbound|80|{key or ''}|{name}.{ns}.svc.cluster.local", name, "/",
            200, 1.0)


def test_memory_is_bounded_per_key_per_number_of_keys_and_in_total():
    log = RequestLog(per_key=5, total=50, max_keys=3)
    for i in range(1000):
        log.add(entry(i, f"k{i % 7}"))
    assert len(log.keys()) == 3 and all(n <= 5 for n in log.keys().values())
    assert len(log.recent(10_000)) == 50 and log.received == 1000


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
