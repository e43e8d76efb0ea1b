"""Edge benchmark: the edge Envoy's throughput with 1 and 1,000 routing keys (preview hosts).

The edge proxy runs meshforge's static `edge.yaml` (`render --format envoy-static`; the same resources
`serve` pushes over ADS) in front of one service `api`, forked by every sandbox; upstreams are a second
Envoy answering with a direct response, so neither backend nor client is the bottleneck. Load: wrk
(Debian package `wrk`), 1 thread, 32 connections, from 127.0.0.1, which is not a trusted source. For
each kind of request, throughput at 1,000 keys is printed as a ratio to 1 key. Goal: cost per request
does not grow with the number of keys (ratio about 1.0).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from bench_dataplane import upstream_config, wrk
from meshforge.backends import render
from meshforge.diagnostics import Diagnostics
from meshforge.envoyproc import Envoy, free_port
from meshforge.pipeline import compile_paths

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def specs(d: Path, keys: int, baseline_port: int, sandbox_port: int) -> None:
    docs = [f"""apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  edge: {{service: api, hosts: [shop.example.com], previewDomain: preview.example.com, trustedSources: [10.0.0.0/8]}}
  services:
  - name: api
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {baseline_port}}}]
"""]
    for i in range(keys):
        docs.append(f"""apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-{i:04d}}}
spec:
  forks: [{{service: api, to: {{endpoints: [{{address: 127.0.0.1, port: {sandbox_port}}}]}}}}]
""")
    (d / "specs.yaml").write_text("---\n".join(docs))


def edge_config(d: Path, port: int, admin: int) -> str:
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    return render(model, "envoy-static", Diagnostics(), edge_port=port, admin_port=admin)["edge.yaml"]


def check(port: int, host: str, headers: dict[str, str], want: str) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Host": host, **headers})
    body = c.getresponse().read().decode()
    c.close()
    assert body == want, (host, headers, body, want)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", default="1,1000")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is reported")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    key_counts = [int(k) for k in args.keys.split(",")]
    shop = "shop.example.com"
    # the preview host is the last key's: a linear scan would pass all the others first
    kinds = {
        "public host, no key": lambda n: (shop, {}, "baseline"),
        "public host, other baggage members": lambda n: (shop, {"baggage": "userId=alice,sessionId=x1"}, "baseline"),
        "public host, forged header": lambda n: (shop, {"x-meshforge-routing-key": f"pr-{n - 1:04d}"}, "baseline"),
        "public host, forged baggage member": lambda n: (
            shop, {"baggage": f"userId=alice, meshforge-routing-key=pr-{n - 1:04d}"}, "baseline"),
        "preview host": lambda n: (f"pr-{n - 1:04d}.preview.example.com", {}, "sandbox"),
    }
    samples: dict[tuple[int, str], list[float]] = {}
    up_admin, base_port, sb_port = free_port(), free_port(), free_port()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.enter_context(Envoy(upstream_config(up_admin, {"baseline": base_port, "sandbox": sb_port}), up_admin,
                                  name="upstream"))
        edges = {}
        for n in key_counts:
            d = Path(tmp) / str(n)
            d.mkdir()
            specs(d, n, base_port, sb_port)
            port, admin = free_port(), free_port()
            stack.enter_context(Envoy(edge_config(d, port, admin), admin, name=f"edge-{n}"))
            edges[n] = port
        cells = [(n, kind) for kind in kinds for n in key_counts]
        for n, kind in cells:
            host, headers, want = kinds[kind](n)
            check(edges[n], host, headers, want)
            wrk(edges[n], headers, 1, host)  # warm-up
        for _ in range(args.rounds):  # rounds rotate through every cell: drift spreads over all of them
            for n, kind in cells:
                host, headers, _ = kinds[kind](n)
                samples.setdefault((n, kind), []).append(wrk(edges[n], headers, args.seconds, host))
    results = {k: statistics.median(v) for k, v in samples.items()}
    print("Edge: real Envoy 1.40 edge proxy (concurrency 1), wrk -t1 -c32 from an untrusted source, "
          "direct-response upstream Envoy")
    print(f"{'request':40s}" + "".join(f"{n:>10d} keys" for n in key_counts))
    for kind in kinds:
        base = results[(key_counts[0], kind)]
        cells_out = [f"{results[(n, kind)]:8.0f}/s" if n == key_counts[0] else f"{results[(n, kind)] / base:9.2f}x"
                     for n in key_counts]
        print(f"{kind:40s}" + "".join(f"{c:>15s}" for c in cells_out))
    print(f"\n(first column: requests/s at {key_counts[0]} key(s); others: ratio to it; each cell the median of "
          f"{args.rounds} runs of {args.seconds} s, rounds interleaved across cells)")


if __name__ == "__main__":
    main()
