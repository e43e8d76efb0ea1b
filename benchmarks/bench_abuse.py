"""Benchmark: what hostile input and clients cost (issues 9 and 21).

- the alias bomb (100 documents of 137k nodes each, a 19 KB file): time and peak memory to refuse it;
- deep nesting and a recursive alias: time to refuse;
- `/metrics` size and server RSS before and after a client asks for 20,000 unknown xDS type URLs;
- an access-log flood (1,000 made-up keys x 200 entries on one stream): server RSS, the rows kept, and
  whether the real key's requests survive;
- clients that ask for a large configuration (~0.8 MB: 3,000 services, every one told everything) and never
  read it: server RSS with 1,000 of them, what was refused and ended, and RSS once they are gone.

Usage: python benchmarks/bench_abuse.py [--stalled 1000]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import rss

BOMB = "---\n".join(["a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                     "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"] * 100)


def refuse(name: str, text: str) -> None:
    code = ("import resource, sys, time\nfrom meshforge.pipeline import compile_paths\n"
            "t0 = time.perf_counter(); m, d = compile_paths([sys.argv[1]])\n"
            "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "[x.code for x in d.items])")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "in.yaml"
        f.write_text(text)
        baseline = subprocess.run([sys.executable, "-c", "import resource, meshforge.pipeline\n"
                                   "print(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                                  capture_output=True, text=True).stdout.split()
        out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True).stdout.split(None, 2)
    secs, rss, codes = float(out[0]), int(out[1]), out[2]
    print(f"  {name} ({len(text):,} bytes): refused in {secs * 1000:.1f} ms, peak RSS {rss / 1024:.0f} MiB "
          f"(interpreter with meshforge imported: {int(baseline[1]) / 1024:.0f} MiB), diagnostics {codes.strip()}")


def metrics_after_unknown_types() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.serve_harness import CLUSTER, SPEC, RawClient, Server, node

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "b.yaml").write_text(SPEC)
        with Server([tmp]) as s:
            c = RawClient(s.xds_port)
            c.send(node=node("web.shop"), type_url=CLUSTER)
            c.recv()
            before, rss0 = len(s.get("/metrics")[1]), rss(s.proc.pid) // 1024
            t0 = time.perf_counter()
            for i in range(20_000):
                c.send(type_url=f"type.googleapis.com/evil.T{i}")
            c.send(type_url=CLUSTER, version_info="x", response_nonce="stale")
            time.sleep(2)
            after, rss1 = len(s.get("/metrics")[1]), rss(s.proc.pid) // 1024
            c.close()
    print(f"  20,000 unknown type URLs on one stream ({time.perf_counter() - t0:.1f} s): /metrics {before:,} -> "
          f"{after:,} bytes; server RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB")


def access_log_flood() -> None:
    import json

    from envoy.config.core.v3 import base_pb2
    from envoy.data.accesslog.v3 import accesslog_pb2
    from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.serve_harness import SPEC, Server, wait_until
    from tests.specs import sandbox

    def entry(cluster: str, key: str) -> accesslog_pb2.HTTPAccessLogEntry:
        e = accesslog_pb2.HTTPAccessLogEntry()
        e.common_properties.upstream_cluster = cluster
        e.request.request_headers["x-meshforge-routing-key"] = key
        e.request.request_id = "r"
        return e

    def messages(key_of, n: int, batch: int = 500):
        first = True
        for start in range(0, n, batch):
            msg = als_pb2.StreamAccessLogsMessage()
            if first:
                msg.identifier.node.CopyFrom(base_pb2.Node(id="web-1", cluster="web.shop"))
                msg.identifier.log_name = "meshforge"
                first = False
            msg.http_logs.log_entry.extend(entry("outbound|80||api.shop.svc.cluster.local", key_of(i))
                                           for i in range(start, min(n, start + batch)))
            yield msg

    import grpc

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "b.yaml").write_text(SPEC)
        (Path(tmp) / "real.yaml").write_text(sandbox("real", ("api", 10)))
        with Server([tmp]) as s:
            rss0 = rss(s.proc.pid)
            with grpc.insecure_channel(f"127.0.0.1:{s.xds_port}") as ch:
                stub = als_pb2_grpc.AccessLogServiceStub(ch)
                stub.StreamAccessLogs(messages(lambda i: "real", 100), timeout=60)
                t0 = time.perf_counter()
                stub.StreamAccessLogs(messages(lambda i: f"fake-{i % 1000}", 200_000), timeout=600)
                secs = time.perf_counter() - t0
            wait_until(lambda: json.loads(s.get("/api/state")[1])["accessLogs"]["received"] >= 200_100, 60)
            state = json.loads(s.get("/api/state")[1])
            real = [r for r in json.loads(s.get("/api/requests?key=real")[1])["requests"] if r["key"] == "real"]
            rss1 = rss(s.proc.pid)
    logs = state["accessLogs"]
    print(f"  access-log flood, 1,000 keys x 200 entries on one stream ({secs:.1f} s): server RSS "
          f"{rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB; rows kept {logs['rows']:,} of {logs['received']:,} "
          f"(bound {logs['capacity']:,}); the real key's 100 requests kept: {len(real)}")


def stalled_clients(n: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.serve_harness import Server, StallingClient

    from meshforge.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        d = generate(Path(tmp) / "specs", services=3000, sandboxes=0, deps=None)
        for args, what in ((("--max-streams-per-peer", str(2 * n)), "one address allowed them all"),
                           ((), "the default 128 streams per address")):
            with Server([d], args=("--log-level", "warning", "--stall-timeout", "10", *args)) as s:
                time.sleep(2)
                rss0 = rss(s.proc.pid)
                clients = []
                for i in range(n):
                    clients.append(StallingClient(s.xds_port, f"svc-{i % 3000:04d}.bench"))
                time.sleep(5)
                rss1 = rss(s.proc.pid)
                time.sleep(10)
                ended = {r: s.metric("meshforge_xds_streams_ended_total", f'reason="{r}"')
                         for r in ("stalled", "pending bytes", "streams per peer")}
                for c in clients:
                    c.close()
                time.sleep(3)
                rss2 = rss(s.proc.pid)
            print(f"  {n:,} clients that never read a ~0.8 MB configuration ({what}): server RSS "
                  f"{rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB while they stall, {rss2 / 2**20:.0f} MiB once gone; "
                  f"streams ended: {', '.join(f'{k} {v:.0f}' for k, v in ended.items())}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stalled", type=int, default=1000)
    args = ap.parse_args()
    print("hostile input")
    refuse("alias bomb, 100 documents x 137k nodes", BOMB)
    refuse("nesting 500 deep", "[" * 500 + "]" * 500)
    refuse("recursive alias", "a: &a [*a]\n")
    print("hostile client")
    metrics_after_unknown_types()
    access_log_flood()
    stalled_clients(args.stalled)
