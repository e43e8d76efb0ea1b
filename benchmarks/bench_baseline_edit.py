"""A Baseline edit at 10,000 services x 10,000 sandboxes (issue 30, goal 2: <= 50 ms).

1. In process, as `serve` runs it (`Session.compile(now, [the changed file])`: re-read and validate the file,
   resolve, lower, check, compile the snapshot), for edits of one service in a Baseline file of 100:
   its labels (nothing routes differently), a dependency added (its node changes group), static endpoints
   set (its clusters and every caller's group rebuilt), a service added and removed, and, for a service no
   one calls or forks, its port made TCP (it leaves every scope). Each edit and its revert, `--rounds`
   times; then `Session.verify()` once: every stage rebuilt from scratch agrees with what the edits left.
2. End to end with `--envoy`: a real `serve` and a real Envoy sidecar; the callee's Baseline entry gets static
   endpoints (the sample app) by renaming the file into place -> the sidecar reaching them, then the entry
   reverted -> the sidecar back on the callee's DNS name (no such host: 503), with the server's own
   compile time per change from its log.

Usage: python benchmarks/bench_baseline_edit.py [--services 10000] [--sandboxes 10000] [--rounds 10] [--envoy]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from procstat import pct, rss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_harness import Server, Sidecar, wait_until  # noqa: E402

from meshforge.sampleapp import SampleApp  # noqa: E402
from meshforge.session import Session  # noqa: E402
from meshforge.synthetic import generate  # noqa: E402

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def blocks(text: str) -> list[str]:
    """Each service entry of a synthetic Baseline file, as written."""
    return ["  - name: svc-" + b + "\n" for b in text.rstrip("\n").split("\n  - name: svc-")[1:]]


def put(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def in_process(d: Path, rounds: int) -> None:
    session = Session([str(d)])
    t0 = time.perf_counter()
    result = session.compile(NOW)
    print(f"  cold: {time.perf_counter() - t0:.1f} s for {len(result.snapshot.nodes)} nodes")
    gc.freeze()
    model = session._last[1]
    called = {dep.service for svc in model.services for dep in svc.depends_on or ()}
    forked = {f.service for kr in model.keys for f in kr.forks}
    path = sorted(d.glob("baseline-*.yaml"))[len(list(d.glob("baseline-*.yaml"))) // 2]
    original = path.read_text()
    entries = blocks(original)
    first = entries[0]
    lonely = next((b for b in entries if f"{b.split()[2]}.bench" not in called | forked), None)
    new = first.replace(first.split()[2], "svc-new").replace("    dependsOn:\n", "    dependsOn:\n    - svc-0000\n")
    edits = {
        "labels": original.replace(first, first.replace("version: v1", "version: v2")),
        "dependency added": original.replace(first, first.replace("    dependsOn:\n", "    dependsOn:\n    - svc-0001\n")),
        "endpoints set": original.replace(first, first + "    endpoints: [{address: 10.1.2.3, port: 8080}]\n"),
        "service added": original + new,
    }
    if lonely is not None:
        edits["port made TCP"] = original.replace(lonely, lonely.replace("name: http\n", "name: tcp\n")
                                                  .replace("name: grpc\n", "name: tcp\n"))
    print(f"  one service edited in {path.name} ({len(entries)} services), then reverted; {rounds} rounds each:")
    every = []
    for label, text in edits.items():
        times = []
        for _ in range(rounds):
            for version in (text, original):
                put(path, version)
                t0 = time.perf_counter()
                r = session.compile(NOW, [os.path.realpath(path)])
                times.append(time.perf_counter() - t0)
                assert not r.errors, r.errors[:1]
        every += times
        print(f"    {label:18s} p50 {pct(times, 50) * 1000:6.1f} ms   p90 {pct(times, 90) * 1000:6.1f} ms   "
              f"max {max(times) * 1000:6.1f} ms")
    print(f"    {'all':18s} p50 {pct(every, 50) * 1000:6.1f} ms   p90 {pct(every, 90) * 1000:6.1f} ms   (goal <= 50 ms)")
    put(path, edits["endpoints set"])
    session.compile(NOW, [os.path.realpath(path)])
    t0 = time.perf_counter()
    problems = session.verify()
    print(f"  verify (every stage from scratch, {time.perf_counter() - t0:.1f} s): "
          f"{'the same' if not problems else problems[:3]}")
    put(path, original)


def end_to_end(d: Path, rounds: int) -> None:
    with SampleApp("edited") as app:
        path = d / "baseline-000.yaml"
        original = path.read_text()
        entries = blocks(original)
        # a node whose first dependency speaks HTTP/1.1 (the sample app does; every third service is gRPC)
        caller = next(b for b in entries if "dependsOn" in b and int(b.split("dependsOn:\n    - svc-")[1][:4]) % 3)
        node = f"{caller.split()[2]}.bench"
        callee = "svc-" + caller.split("dependsOn:\n    - svc-")[1][:4]
        holder = next(p for p in sorted(d.glob("baseline-*.yaml")) if f"- name: {callee}\n" in p.read_text())
        text = holder.read_text()
        entry = next(b for b in blocks(text) if b.split()[2] == callee)
        edited = text.replace(entry, entry + f"    endpoints: [{{address: 127.0.0.1, port: {app.port}}}]\n")
        server = Server([d])
        t0 = time.perf_counter()
        server.spawn()
        try:
            wait_until(lambda: server.get("/readyz")[0] == 200, 600, interval=0.05, what="serve ready")
            print(f"  serve ready in {time.perf_counter() - t0:.1f} s, RSS {rss(server.proc.pid) / 2**20:.0f} MiB")
            with Sidecar(node, server) as sc:
                def who() -> str:
                    c = http.client.HTTPConnection("127.0.0.1", sc.outbound, timeout=2)
                    try:
                        c.request("GET", "/", headers={"host": f"{callee}:8080"})
                        r = c.getresponse()
                        body = r.read().decode()
                        return body if r.status == 200 else f"HTTP {r.status}"
                    finally:
                        c.close()

                wait_until(lambda: who().startswith("HTTP"), 30, what="the sidecar configured")
                on, off = [], []
                for _ in range(rounds):
                    t1 = time.perf_counter()
                    put(holder, edited)
                    while "edited" not in who():
                        time.sleep(0.001)
                    on.append(time.perf_counter() - t1)
                    time.sleep(0.2)
                    t1 = time.perf_counter()
                    put(holder, text)
                    while "edited" in who():
                        time.sleep(0.001)
                    off.append(time.perf_counter() - t1)
                    time.sleep(0.2)
            compiles = [float(m) for m in re.findall(
                r"file change\(s\)\): published snapshot \d+ for \d+ nodes in ([\d.]+) ms", server.log())]
            print(f"  {callee}'s Baseline entry edited in {holder.name} -> the sidecar of {node} routing by it "
                  f"({rounds} each):")
            for label, xs in (("endpoints set", on), ("reverted", off), ("all", on + off)):
                print(f"    {label:14s} p50 {pct(xs, 50) * 1000:6.1f} ms   p90 {pct(xs, 90) * 1000:6.1f} ms   "
                      f"max {max(xs) * 1000:6.1f} ms")
            if compiles:
                print(f"  server reload per change (from its log): p50 {pct(compiles, 50):.1f} ms, "
                      f"p90 {pct(compiles, 90):.1f} ms")
        finally:
            server.stop()
            path.write_text(original)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--sandboxes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--envoy", action="store_true", help="also end to end, with a real serve and Envoy")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = generate(Path(tmp) / "specs", args.services, args.sandboxes)
        print(f"{args.services} services x {args.sandboxes} sandboxes (dependsOn 3 per service), "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        in_process(d, args.rounds)
        if args.envoy:
            end_to_end(d, args.rounds)


if __name__ == "__main__":
    main()
