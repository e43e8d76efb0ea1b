"""Control-plane benchmarks against a real `meshforge serve` process.

1. Propagation: from a spec file renamed into place to a real Envoy sidecar serving the new route (goal:
   p50 <= 10 ms, p90 <= 25 ms). Each round renames a new sandbox file into place (or deletes the previous
   one) and polls the sidecar every millisecond with the round's key until the answer comes from the
   sandbox (or baseline).
2. Fan-out: 100 simulated ADS clients (SotW, one node each, subscribed to CDS/EDS/LDS/RDS and ACKing
   like Envoy) all receiving an update: time from the file write to each client's first response
   carrying it (goal: p99 <= 150 ms).
3. Memory: the server's resident memory with 1,000 connected ADS streams.

Usage: python benchmarks/bench_propagation.py [--rounds 60] [--clients 100] [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from procstat import pct, rss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_harness import Server, Sidecar, wait_until  # noqa: E402

from meshforge.sampleapp import SampleApp  # noqa: E402
from meshforge.xdsapi import CLUSTER_TYPE as CDS
from meshforge.xdsapi import LISTENER_TYPE as LDS
from meshforge.xdsapi import ROUTE_TYPE as RDS


def spec(services: int, base_port: int) -> str:
    svcs = "\n".join(f"  - name: s{i}\n    ports: [{{name: http, port: 80}}]\n"
                     f"    endpoints: [{{address: 127.0.0.1, port: {base_port}}}]\n    dependsOn: [api]"
                     for i in range(services))
    return f"""apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  services:
  - name: api
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {base_port}}}]
{svcs}
"""


def sandbox(name: str, port: int) -> str:
    return (f"apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\nspec:\n  forks:\n"
            f"  - service: api\n    to: {{endpoints: [{{address: 127.0.0.1, port: {port}}}]}}\n")


def who(port: int, key: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", "http://api/", headers={"host": "api", "x-meshforge-routing-key": key})
        r = c.getresponse()
        body = r.read()
        return body.decode() if r.status == 200 else f"HTTP {r.status}"
    finally:
        c.close()


def propagation(d: Path, server: Server, rounds: int, base: SampleApp, sb: SampleApp) -> None:
    with Sidecar("s0.default", server) as sc:
        wait_until(lambda: '"baseline"' in who(sc.outbound, "x"), 20)
        add, remove = [], []
        for i in range(rounds):
            key = f"prop-{i}"
            f = d / f"{key}.yaml"
            tmp = d / f".{key}.tmp"  # written aside, then renamed into place (what git-sync and editors do)
            tmp.write_text(sandbox(key, sb.port))
            t0 = time.perf_counter()
            os.replace(tmp, f)
            while '"sandbox"' not in who(sc.outbound, key):
                time.sleep(0.001)
            add.append(time.perf_counter() - t0)
            time.sleep(0.05)
            t0 = time.perf_counter()
            f.unlink()
            while '"baseline"' not in who(sc.outbound, key):
                time.sleep(0.001)
            remove.append(time.perf_counter() - t0)
            time.sleep(0.05)
    both = add + remove
    print(f"propagation, file renamed into place (or deleted) -> real Envoy serving the change ({rounds} adds, "
          f"{rounds} deletes):")
    for label, xs in (("new sandbox", add), ("deleted sandbox", remove), ("all", both)):
        print(f"  {label:16s} p50 {pct(xs, 50) * 1000:6.1f} ms   p90 {pct(xs, 90) * 1000:6.1f} ms   "
              f"p99 {pct(xs, 99) * 1000:6.1f} ms   max {max(xs) * 1000:6.1f} ms")
    print("  goal (issue 15): p50 <= 10 ms, p90 <= 25 ms")


async def _client(port: int, node_cluster: str, node_id: str, events: dict, ready: asyncio.Event, stop: asyncio.Event):
    """An Envoy-like SotW client: CDS+LDS wildcard, then RDS/EDS by name; ACKs everything; records arrivals."""
    q: asyncio.Queue = asyncio.Queue()
    node = base_pb2.Node(id=node_id, cluster=node_cluster)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)

        async def reqs():
            yield discovery_pb2.DiscoveryRequest(node=node, type_url=CDS)
            yield discovery_pb2.DiscoveryRequest(type_url=LDS)
            yield discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=["meshforge_outbound"])
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item

        call = stub.StreamAggregatedResources(reqs())
        seen = 0
        async for resp in call:
            events.setdefault(node_id, []).append((time.perf_counter(), resp.type_url, resp.version_info))
            await q.put(discovery_pb2.DiscoveryRequest(type_url=resp.type_url, version_info=resp.version_info,
                                                       response_nonce=resp.nonce,
                                                       resource_names=["meshforge_outbound"] if resp.type_url == RDS else []))
            seen += 1
            if seen == 3:
                ready.set()
            if stop.is_set():
                break
        await q.put(None)


async def fanout(d: Path, server: Server, clients: int, rounds: int, sb_port: int) -> list[float]:
    events: dict = {}
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.ensure_future(_client(server.xds_port, f"s{i % 50}.default", f"c{i}", events, readies[i], stop))
             for i in range(clients)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    await asyncio.sleep(0.5)
    lat = []
    for r in range(rounds):
        before = {k: len(v) for k, v in events.items()}
        t0 = time.perf_counter()
        (d / f"fan-{r}.yaml").write_text(sandbox(f"fan-{r}", sb_port))
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            done = [k for k, v in events.items() if any(e[1] == RDS for e in v[before.get(k, 0):])]
            if len(done) == clients:
                break
            await asyncio.sleep(0.005)
        for k, v in events.items():
            arrivals = [e[0] for e in v[before.get(k, 0):] if e[1] == RDS]
            if arrivals:
                lat.append(arrivals[0] - t0)
        await asyncio.sleep(0.3)
    stop.set()
    for t in tasks:
        t.cancel()
    return lat


async def hold_streams(port: int, n: int, hold: float, rss) -> tuple[int, int]:
    before = rss()
    chans = []
    calls = []
    for i in range(n):
        ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}") if i % 50 == 0 else chans[-1]
        if i % 50 == 0:
            chans.append(ch)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)

        async def reqs(i=i):
            yield discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id=f"m{i}", cluster=f"s{i % 50}.default"),
                                                 type_url=CDS)
            await asyncio.sleep(hold + 30)

        call = stub.StreamAggregatedResources(reqs())
        calls.append(call)
        if i % 200 == 199:  # open them in steps, as proxies connecting over time would
            await asyncio.sleep(0.02)
    got = failed = 0
    for call in calls:
        try:
            await call.read()  # the first response: the server holds the stream and its state
            got += 1
        except grpc.aio.AioRpcError:
            failed += 1
    await asyncio.sleep(hold)
    after = rss()
    if failed:
        print(f"  ({failed} of {n} streams failed on the client side before their first response)")
    for call in calls:
        call.cancel()
    for ch in chans:
        await ch.close()
    return before, after


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--fanout-rounds", type=int, default=10)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--only-streams", action="store_true", help="only the memory measurement")
    args = ap.parse_args()
    with SampleApp("baseline") as base, SampleApp("sandbox") as sb, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "specs"
        d.mkdir()
        (d / "baseline.yaml").write_text(spec(50, base.port))
        base.answer = lambda headers: "baseline"
        sb.answer = lambda headers: "sandbox"
        with Server([d]) as server:
            if not args.only_streams:
                propagation(d, server, args.rounds, base, sb)
                lat = asyncio.run(fanout(d, server, args.clients, args.fanout_rounds, sb.port))
            if not args.only_streams:
                print(f"\nfan-out: {args.clients} simulated SotW ADS clients (50 nodes), {args.fanout_rounds} updates, "
                      f"file write -> each client receiving the new route configuration:")
                print(f"  p50 {pct(lat, 50) * 1000:.1f} ms   p90 {pct(lat, 90) * 1000:.1f} ms   "
                      f"p99 {pct(lat, 99) * 1000:.1f} ms   max {max(lat) * 1000:.1f} ms   ({len(lat)} deliveries; "
                      f"goal p99 <= 150 ms)")

            before, after = asyncio.run(hold_streams(server.xds_port, args.streams, 2.0, lambda: rss(server.proc.pid)))
            print(f"\nmemory: server RSS {before / 2**20:.1f} MiB idle -> {after / 2**20:.1f} MiB with {args.streams} "
                  f"connected ADS streams ({(after - before) / args.streams / 1024:.1f} KiB per stream)")


if __name__ == "__main__":
    main()
