"""Ten times the mesh: `meshforge serve` with 10,000 services x 10,000 sandboxes (two dependencies each).

Measured from outside, on a real `serve` process and a real Envoy sidecar:
1. start -> /readyz 200 (every file read, validated, resolved, compiled), and the server's RSS then
   (goals: <= 20 s, <= 1 GB in issue 15; <= 15 s, <= 500 MB in issue 30);
2. one sandbox file renamed into place (a new key forking a service the sidecar calls) -> the sidecar
   routing it, and the file deleted -> back to the baseline (goal: p50 <= 10 ms, p90 <= 25 ms), with the
   server's own compile time per change from its log.

Usage: python benchmarks/bench_scale.py [--services 10000] [--sandboxes 10000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

from procstat import pct, rss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_harness import Server, Sidecar, wait_until  # noqa: E402

from meshforge.sampleapp import SampleApp  # noqa: E402
from meshforge.synthetic import generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--sandboxes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SampleApp("sandbox") as sb:
        d = generate(Path(tmp) / "specs", args.services, args.sandboxes, deps=2)
        # a node whose first dependency speaks HTTP/1.1 (the test backend does; every third service is gRPC)
        first = next(s for s in yaml.safe_load((d / "baseline-000.yaml").read_text())["spec"]["services"]
                     if s.get("dependsOn") and int(s["dependsOn"][0].split("-")[1]) % 3)
        node, callee, port = f"{first['name']}.bench", first["dependsOn"][0], 8080
        sb.answer = lambda headers: "sandbox"
        server = Server([d])
        t0 = time.perf_counter()
        server.spawn()
        try:
            wait_until(lambda: server.get("/readyz")[0] == 200, 600, interval=0.05, what="serve ready")
            ready = time.perf_counter() - t0
            print(f"{args.services} services x {args.sandboxes} sandboxes (dependsOn 2 per service)")
            print(f"  serve start -> /readyz 200: {ready:.1f} s (goal <= 15 s, issue 30); RSS {rss(server.proc.pid) / 2**20:.0f} "
                  f"MiB (goal <= 500 MB)")
            with Sidecar(node, server) as sc:
                def who(key: str) -> str:
                    c = http.client.HTTPConnection("127.0.0.1", sc.outbound, timeout=2)
                    try:
                        c.request("GET", "/", headers={"host": f"{callee}:{port}", "x-meshforge-routing-key": key})
                        r = c.getresponse()
                        body = r.read().decode()
                        return body if r.status == 200 else f"HTTP {r.status}"
                    finally:
                        c.close()

                add, remove = [], []
                for i in range(args.rounds):
                    key = f"scale-{i}"
                    f, tmpf = d / "sandboxes" / f"{key}.yaml", d / f".{key}.tmp"
                    tmpf.write_text(f"apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {key}, "
                                    f"namespace: bench}}\nspec:\n  forks: [{{service: {callee}, to: {{endpoints: "
                                    f"[{{address: 127.0.0.1, port: {sb.port}}}]}}}}]\n")
                    t1 = time.perf_counter()
                    os.replace(tmpf, f)
                    while "sandbox" not in who(key):
                        time.sleep(0.001)
                    add.append(time.perf_counter() - t1)
                    time.sleep(0.2)
                    t1 = time.perf_counter()
                    f.unlink()
                    while "sandbox" in who(key):
                        time.sleep(0.001)
                    remove.append(time.perf_counter() - t1)
                    time.sleep(0.2)
            compiles = [float(m) for m in re.findall(r"file change\(s\)\): published snapshot \d+ for \d+ nodes in ([\d.]+) ms",
                                                     server.log())]
            both = add + remove
            print(f"  one sandbox renamed into place / deleted -> the sidecar routing it ({args.rounds} each):")
            for label, xs in (("added", add), ("deleted", remove), ("all", both)):
                print(f"    {label:8s} p50 {pct(xs, 50) * 1000:7.1f} ms   p90 {pct(xs, 90) * 1000:7.1f} ms   "
                      f"max {max(xs) * 1000:7.1f} ms")
            print("    goal: p50 <= 10 ms, p90 <= 25 ms")
            if compiles:
                print(f"  server compile per change (re-read, resolve, compile; from its log): p50 {pct(compiles, 50):.1f} ms, "
                      f"p90 {pct(compiles, 90):.1f} ms")
            print(f"  RSS at the end {rss(server.proc.pid) / 2**20:.0f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
