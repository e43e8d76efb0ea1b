"""Propagation against its floor (issue 30, goal 3), same machine, same run, same Envoy, same resources.

- meshforge: a sandbox file renamed into place (or deleted) -> the watcher, the read, the compile, the ADS push
  (clusters, endpoints, routes, each ACKed) -> the real Envoy sidecar routing the key to the sandbox (or back).
- the floor: a minimal ADS pusher (`Floor`) holding both states' resources pre-rendered (meshforge's own bytes for
  this node, so the Envoy work is identical) that, told to switch, pushes them over the open stream in the same
  make-before-break order (add: CDS, its ACK, EDS, its ACK, RDS; delete: RDS, its ACK, then CDS and EDS): Envoy
  applying pre-built responses, with nothing of meshforge in between.
Both are measured the same way: from the trigger to the first answer from the expected version, polling the
sidecar every millisecond with the round's key. Rounds alternate meshforge / floor. Prints p50/p90 per side,
adds and deletes, and the ratio (goal: meshforge within 1.25x of the floor).

Usage: python benchmarks/bench_floor.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from bench_propagation import sandbox, spec, who
from procstat import pct

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_harness import Server, Sidecar, wait_until  # noqa: E402

from meshforge.emit.xds.compiler import XdsCompiler  # noqa: E402
from meshforge.envoyproc import Envoy, free_port  # noqa: E402
from meshforge.pipeline import compile_paths  # noqa: E402
from meshforge.sampleapp import SampleApp  # noqa: E402
from meshforge.xdsapi import CLUSTER_TYPE as CDS  # noqa: E402
from meshforge.xdsapi import ENDPOINT_TYPE as EDS  # noqa: E402
from meshforge.xdsapi import LISTENER_TYPE as LDS  # noqa: E402
from meshforge.xdsapi import ROUTE_TYPE as RDS  # noqa: E402

NODE = "s0.default"


def states(d: Path, key: str, port: int, outbound: int) -> tuple[dict, dict]:
    """(without the sandbox, with it): type URL -> name -> body, as meshforge serves them to NODE."""
    out = []
    for with_sandbox in (False, True):
        f = d / f"{key}.yaml"
        if with_sandbox:
            f.write_text(sandbox(key, port))
        model, diags = compile_paths([str(d)])
        assert model is not None, diags.items
        res = XdsCompiler(access_logs=None).compile(model).resources(NODE, outbound)  # no ALS: nobody to log to
        out.append({t: {n: r.body for n, r in m.items()} for t, m in res.items()})
        f.unlink(missing_ok=True)
    return out[0], out[1]


class Floor:
    """The smallest ADS server that does what meshforge's does for one Envoy: state of the world, each response
    ACKed before the next type goes out (make-before-break), resources given as bytes."""

    def __init__(self, state: dict):
        self.state = state
        self.nonces = itertools.count(1)
        self.versions = itertools.count(1)
        self.version = {t: str(next(self.versions)) for t in (CDS, EDS, LDS, RDS)}
        self.names: dict[str, set[str]] = {}  # what the proxy asked for by name (EDS, RDS)
        self.acked = {t: asyncio.Event() for t in (CDS, EDS, LDS, RDS)}
        self.out: asyncio.Queue | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sent: list[tuple[float, str]] = []  # (perf_counter, type) of each response handed to the transport

    def response(self, t: str) -> discovery_pb2.DiscoveryResponse:
        res = self.state.get(t, {})
        names = self.names.get(t)
        chosen = sorted(n for n in res if names is None or n in names)
        self.acked[t].clear()
        return discovery_pb2.DiscoveryResponse(version_info=self.version[t], type_url=t, nonce=str(next(self.nonces)),
                                               resources=[any_pb2.Any(type_url=t, value=res[n]) for n in chosen])

    async def stream(self, requests, context):
        self.out = asyncio.Queue()

        async def read():
            async for req in requests:
                t = req.type_url
                resubscribed = t in (EDS, RDS) and set(req.resource_names) != self.names.get(t)
                if resubscribed:
                    self.names[t] = set(req.resource_names)
                if req.response_nonce and not req.HasField("error_detail"):
                    self.acked[t].set()
                if req.response_nonce and not resubscribed:
                    continue  # an ACK (or a NACK): nothing to answer
                await self.out.put(self.response(t))  # a first request, or new names (a new cluster's endpoints)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                resp = await self.out.get()
                await context.write(resp)
                self.sent.append((time.perf_counter(), resp.type_url.rsplit(".", 1)[1]))
        finally:
            reader.cancel()

    async def push(self, state: dict, order: tuple[str, ...]) -> None:
        """Switch to `state`, pushing `order` one type at a time, each ACKed before the next."""
        self.state = state
        for t in order:
            self.version[t] = str(next(self.versions))
            await self.out.put(self.response(t))
            await self.acked[t].wait()


def serve_floor(floor: Floor, port: int) -> threading.Thread:
    ready = threading.Event()

    def run():
        async def main():
            floor.loop = asyncio.get_running_loop()
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService", {
                    "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                        floor.stream, request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                        response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString)}),))
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            ready.set()
            await server.wait_for_termination()
        asyncio.run(main())

    th = threading.Thread(target=run, daemon=True)
    th.start()
    ready.wait(10)
    return th


def until(port: int, key: str, want: str, t0: float) -> float:
    while f'"{want}"' not in who(port, key):
        time.sleep(0.001)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--no-access-logs", action="store_true",
                    help="serve without access logs, as the floor's Envoy is (its listener sends none): the same Envoy "
                    "work per polled request on both sides")
    args = ap.parse_args()
    times = {("meshforge", "add"): [], ("meshforge", "delete"): [], ("floor", "add"): [], ("floor", "delete"): []}
    spans = {k: [] for k in times}  # (trigger, end) in perf_counter seconds, per round: lined up with the traces
    trace_file = Path(tempfile.mkstemp(prefix="meshforge-trace-", suffix=".jsonl")[1])
    os.environ["MESHFORGE_TRACE"] = str(trace_file)  # serve (a child process) writes its steps there
    with SampleApp("baseline") as base, SampleApp("sandbox") as sb, tempfile.TemporaryDirectory() as tmp:
        base.answer = lambda headers: "baseline"
        sb.answer = lambda headers: "sandbox"
        d = Path(tmp) / "specs"
        d.mkdir()
        (d / "baseline.yaml").write_text(spec(50, base.port))
        floor_port, outbound, admin = free_port(), free_port(), free_port()
        key = "floor-0"
        without, with_ = states(d, key, sb.port, outbound)
        floor = Floor(without)
        serve_floor(floor, floor_port)
        from meshforge.emit.xds.backend import dump, to_dict
        from meshforge.emit.xds.bootstrap import ads_bootstrap

        boot = ads_bootstrap(NODE, "127.0.0.1", floor_port, outbound, admin, "floor-sidecar")
        serve_args = ("--no-access-logs",) if args.no_access_logs else ()
        with Server([d], args=serve_args) as server, Sidecar(NODE, server) as sc, \
                Envoy(dump(to_dict(boot)), admin, name="floor"):
            wait_until(lambda: '"baseline"' in who(sc.outbound, "x"), 20)
            wait_until(lambda: '"baseline"' in who(outbound, "x"), 20)

            for i in range(args.rounds):
                k = f"prop-{i}"
                f, tmpf = d / f"{k}.yaml", d / f".{k}.tmp"
                tmpf.write_text(sandbox(k, sb.port))
                t0 = time.perf_counter()
                os.replace(tmpf, f)
                times[("meshforge", "add")].append(until(sc.outbound, k, "sandbox", t0))
                spans[("meshforge", "add")].append((t0, t0 + times[("meshforge", "add")][-1]))
                time.sleep(0.05)
                t0 = time.perf_counter()
                f.unlink()
                times[("meshforge", "delete")].append(until(sc.outbound, k, "baseline", t0))
                spans[("meshforge", "delete")].append((t0, t0 + times[("meshforge", "delete")][-1]))
                time.sleep(0.05)
                t0 = time.perf_counter()
                fut = asyncio.run_coroutine_threadsafe(floor.push(with_, (CDS, EDS, RDS)), floor.loop)
                times[("floor", "add")].append(until(outbound, key, "sandbox", t0))
                spans[("floor", "add")].append((t0, t0 + times[("floor", "add")][-1]))
                fut.result(10)
                time.sleep(0.05)
                t0 = time.perf_counter()
                fut = asyncio.run_coroutine_threadsafe(floor.push(without, (RDS, CDS, EDS)), floor.loop)
                times[("floor", "delete")].append(until(outbound, key, "baseline", t0))
                spans[("floor", "delete")].append((t0, t0 + times[("floor", "delete")][-1]))
                fut.result(10)
                time.sleep(0.05)
            import re

            reloads = [float(m[1]) / 1000 for m in re.finditer(r"reload \(\d+ file change\(s\)\): published snapshot \d+ for \d+ "
                                                                r"nodes in ([\d.]+) ms", server.log())]
    print(f"propagation to a real Envoy, {args.rounds} adds and {args.rounds} deletes each, rounds alternating:")
    for (side, op), xs in times.items():
        print(f"  {side:9s} {op:6s} p50 {pct(xs, 50) * 1000:6.2f} ms   p90 {pct(xs, 90) * 1000:6.2f} ms")
    for op in ("add", "delete"):
        m, f = times[("meshforge", op)], times[("floor", op)]
        print(f"  {op:6s}: meshforge / floor  p50 {pct(m, 50) / pct(f, 50):.2f}x   p90 {pct(m, 90) / pct(f, 90):.2f}x"
              "   (goal <= 1.25x)")
    if reloads:
        print(f"  serve's reload (read, parse, resolve, lower, compile, publish) p50 {pct(reloads, 50) * 1000:.2f} ms "
              f"over {len(reloads)} reloads")
    breakdown(spans, [json.loads(line) for line in trace_file.read_text().splitlines()], floor.sent)
    trace_file.unlink()


def breakdown(spans: dict, steps: list[dict], floor_sent: list[tuple[float, str]]) -> None:
    """Where each side's time goes, p50 per step over the rounds: serve's own steps (MESHFORGE_TRACE) and the
    floor's sends, lined up with the benchmark's trigger and end on the one monotonic clock."""
    sent = [(x["t"], x["type"]) for x in steps if x["what"] == "sent" and x.get("node") == NODE]
    for op in ("add", "delete"):
        rows: dict[str, list[float]] = {}
        for t0, end in spans[("meshforge", op)]:
            inside = [x for x in steps if t0 <= x["t"] <= end]
            first = {w: next((x for x in inside if x["what"] == w), None) for w in ("watch", "reload", "compiled",
                                                                                    "published")}
            out = [t for t, _ in sent if t0 <= t <= end]
            if None in first.values() or not out:
                continue
            marks = [("file change -> watcher woken", first["watch"]["t"] - t0),
                     ("watcher -> reload begun", first["reload"]["t"] - first["watch"]["t"]),
                     ("reload: workspace (read, parse, resolve, lower)", first["compiled"].get("workspace", 0.0)),
                     ("reload: backend check", first["compiled"].get("check", 0.0)),
                     ("reload: xDS compile", first["compiled"].get("xds", 0.0)),
                     ("compiled -> published", first["published"]["t"] - first["compiled"]["t"]),
                     ("published -> first response written", out[0] - first["published"]["t"]),
                     ("first response -> last response written", out[-1] - out[0]),
                     ("last response -> Envoy routing it (seen by the 1 ms poll)", end - out[-1])]
            for name, v in marks:
                rows.setdefault(name, []).append(v)
        frows: dict[str, list[float]] = {}
        for t0, end in spans[("floor", op)]:
            out = [t for t, _ in floor_sent if t0 <= t <= end]
            if not out:
                continue
            for name, v in (("push -> first response written", out[0] - t0),
                            ("first response -> last response written", out[-1] - out[0]),
                            ("last response -> Envoy routing it (seen by the 1 ms poll)", end - out[-1])):
                frows.setdefault(name, []).append(v)
        print(f"  where the time goes, {op}s (p50 per step over {len(next(iter(rows.values()), []))} rounds):")
        for name, xs in rows.items():
            print(f"    meshforge  {name:58s} {pct(xs, 50) * 1000:6.2f} ms")
        for name, xs in frows.items():
            print(f"    floor      {name:58s} {pct(xs, 50) * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
