"""Fan-out at 10,000 ADS streams: server memory, and an update reaching every stream (issue 15, goal 4).

A real `meshforge serve` (50 services calling `api`) and N simulated Envoy-like SotW clients spread
over P client processes (one Python process cannot drive 10,000 streams: at that size it, not the
server, dropped streams). Each client is a node (`s<i % 50>.default`) on a gRPC stream of its own
(25 streams share one HTTP/2 connection), subscribes to CDS, LDS and RDS and ACKs every response as
Envoy does. Measured:
1. the server's resident memory idle and with every stream connected and configured (goal <= 500 MB);
2. per round, a new sandbox forking `api` written into the spec directory -> each client's first RDS
   response after it (wall clock, same machine); p50/p90/p99/max over every client and round
   (goal: p99 <= 500 ms).
The client processes share the machine's cores with the server: on a 2-core VM they compete for them.

Usage: python benchmarks/bench_fanout.py [--streams 10000] [--procs 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bench_propagation import sandbox, spec
from procstat import cpu_seconds, pct, rss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_harness import Server  # noqa: E402

from meshforge.xdsapi import CLUSTER_TYPE as CDS  # noqa: E402
from meshforge.xdsapi import LISTENER_TYPE as LDS  # noqa: E402
from meshforge.xdsapi import ROUTE_TYPE as RDS  # noqa: E402

PER_CHANNEL = 16  # serve allows 16 concurrent streams per connection (control.MAX_STREAMS)


async def _client(stub, node: base_pb2.Node, arrivals: list, configured: list, stop: asyncio.Event) -> None:
    """SotW like Envoy: CDS and LDS wildcard, RDS by name; ACK everything; note when each RDS arrives. A
    stream that fails is opened again after a pause, as Envoy does (configured[1] counts those)."""
    while not stop.is_set():
        q: asyncio.Queue = asyncio.Queue()

        async def reqs(q=q):
            yield discovery_pb2.DiscoveryRequest(node=node, type_url=CDS)
            yield discovery_pb2.DiscoveryRequest(type_url=LDS)
            yield discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=["meshforge_outbound"])
            while (item := await q.get()) is not None:
                yield item

        call = stub.StreamAggregatedResources(reqs())
        seen = set()
        try:
            async for resp in call:
                if resp.type_url == RDS:
                    arrivals.append(time.time())
                seen.add(resp.type_url)
                if len(seen) == 3:
                    configured[0] = True
                q.put_nowait(discovery_pb2.DiscoveryRequest(
                    type_url=resp.type_url, version_info=resp.version_info, response_nonce=resp.nonce,
                    resource_names=["meshforge_outbound"] if resp.type_url == RDS else []))
                if stop.is_set():
                    break
        except grpc.aio.AioRpcError:
            configured[1] += 1  # gRPC's client library in this process failed it ("Internal error from Core")
        q.put_nowait(None)
        if not stop.is_set():
            await asyncio.sleep(0.2)


def _worker(port: int, first: int, count: int, ready, go, out, per_channel: int = PER_CHANNEL,
            timeout: float = 300) -> None:
    async def main():
        stop = asyncio.Event()
        chans, tasks, logs, flags = [], [], [], []
        for i in range(first, first + count):
            if (i - first) % per_channel == 0:
                # a connection of its own (channels to one target share one by default, and serve takes 16
                # streams per connection)
                chans.append(grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]))
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(chans[-1])
            arrivals, configured = [], [False, 0]
            logs.append(arrivals)
            flags.append(configured)
            tasks.append(asyncio.ensure_future(
                _client(stub, base_pb2.Node(id=f"c{i}", cluster=f"s{i % 50}.default"), arrivals, configured, stop)))
            if (i - first) % 200 == 199:
                await asyncio.sleep(0.05)  # proxies connect over time, not in one instant
        deadline = time.monotonic() + timeout
        while sum(f[0] for f in flags) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        ready.put((sum(f[0] for f in flags), sum(f[1] for f in flags)))
        while not go.is_set():  # the parent runs the rounds, then sets go to collect
            await asyncio.sleep(0.1)
        stop.set()
        out.put(logs)
        for t in tasks:
            t.cancel()
        for ch in chans:
            await ch.close()

    asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gap", type=float, default=3.0, help="seconds between rounds")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers N (with --no-access-logs)")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "specs"
        d.mkdir()
        (d / "baseline.yaml").write_text(spec(50, 9))
        extra = ("--workers", str(args.workers), "--no-access-logs") if args.workers > 1 else ()
        with Server([d], args=("--log-level", "warning", "--max-streams-per-peer", str(args.streams + 100),
                               *extra)) as server:
            def family() -> list[int]:  # serve and its worker processes
                kids = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout
                return [server.proc.pid, *map(int, kids.split())]

            while len(family()) < args.workers:
                time.sleep(0.1)
            time.sleep(3.0 if args.workers > 1 else 0)  # the workers compile, then listen
            idle = sum(map(rss, family()))
            ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
            share = -(-args.streams // args.procs)
            procs = []
            t0 = time.perf_counter()
            for p in range(args.procs):
                first = p * share
                count = max(0, min(share, args.streams - first))
                pr = ctx.Process(target=_worker, args=(server.xds_port, first, count, ready, go, out), daemon=True)
                pr.start()
                procs.append(pr)
            counts = [ready.get(timeout=600) for _ in procs]
            configured, reopened = sum(c[0] for c in counts), sum(c[1] for c in counts)
            connect_s = time.perf_counter() - t0
            time.sleep(1.0)
            held = sum(map(rss, family()))
            print(f"{args.streams} SotW ADS streams from {args.procs} client processes ({PER_CHANNEL} per HTTP/2 "
                  f"connection): {configured} configured (CDS, LDS, RDS received) in {connect_s:.1f} s; {reopened} streams "
                  "failed on the client side and were opened again")
            print(f"  server RSS ({args.workers} process(es)) {idle / 2**20:.0f} MiB idle -> {held / 2**20:.0f} MiB with them "
                  f"({(held - idle) / max(configured, 1) / 1024:.1f} KiB per stream); goal <= 500 MB")
            starts = []
            cpu0 = sum(map(cpu_seconds, family()))
            for r in range(args.rounds):
                starts.append(time.time())
                (d / f"fan-{r}.yaml").write_text(sandbox(f"fan-{r}", 10))
                time.sleep(args.gap)
            server_cpu = sum(map(cpu_seconds, family())) - cpu0
            go.set()
            logs = [arr for _ in procs for arr in out.get(timeout=120)]
            for pr in procs:
                pr.join(30)
        lat, missed = [], 0
        for i, t_start in enumerate(starts):
            t_end = starts[i + 1] if i + 1 < len(starts) else float("inf")
            for arrivals in logs:
                got = [a for a in arrivals if t_start <= a < t_end]
                if got:
                    lat.append(got[0] - t_start)
                else:
                    missed += 1
        print(f"  update -> every stream's RDS, {args.rounds} rounds x {len(logs)} streams: p50 {pct(lat, 50) * 1000:.0f} ms, "
              f"p90 {pct(lat, 90) * 1000:.0f} ms, p99 {pct(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms; "
              f"{missed} stream-rounds without the update within {args.gap:.0f} s")
        print("  goal: p99 <= 500 ms")
        print(f"  server CPU during the rounds: {server_cpu:.1f} s = {server_cpu / (args.rounds * len(logs)) * 1e6:.0f} us "
              f"per stream per update (what a new sandbox changes for these clients: CDS and RDS, each ACKed)")


if __name__ == "__main__":
    main()
