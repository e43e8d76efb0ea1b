"""Data-plane benchmark: real Envoy routing throughput with 0 / 10 / 100 / 1,000 routing keys.

One forked service `api`; every sandbox forks it to static endpoints. The sidecar under test runs
meshforge's static bootstrap (`render --format envoy-static`, the same resources `serve` pushes);
upstreams are a second Envoy answering with a direct response, so neither backend nor client is the
bottleneck. Load: wrk (Debian package `wrk`), 1 thread, 32 connections. For each key count and each
kind of request, throughput is printed as a ratio to the 0-key run with the same request headers
(at 0 keys a "sandbox" request carries a key nobody defines and reaches the baseline). Goal: >= 0.9
at 1,000 keys.

For contrast (--contrast), the same sidecar with Istio's shape of routing: a linear list of routes,
each matching the baggage member by regex, before the default route.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from meshforge.backends import render
from meshforge.diagnostics import Diagnostics
from meshforge.envoyproc import Envoy, free_port
from meshforge.pipeline import compile_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.envoy_harness import istio_style_routes  # noqa: E402

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def upstream_config(admin: int, ports: dict[str, int]) -> dict:
    listeners = []
    for name, port in ports.items():
        listeners.append({
            "name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name, "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [{
                    "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": name}}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": listeners}}


def specs(d: Path, keys: int, baseline_port: int, sandbox_port: int) -> None:
    docs = [f"""apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  services:
  - name: client
    ports: [{{name: http, port: 80}}]
    dependsOn: [api]
  - name: api
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {baseline_port}}}]
"""]
    for i in range(keys):
        docs.append(f"""apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-{i:04d}}}
spec:
  forks:
  - service: api
    to: {{endpoints: [{{address: 127.0.0.1, port: {sandbox_port}}}]}}
""")
    (d / "specs.yaml").write_text("---\n".join(docs))


def sidecar_config(d: Path, out_port: int, admin: int) -> str:
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    return render(model, "envoy-static", Diagnostics(), outbound_port=out_port, admin_port=admin)["client.default.yaml"]


def wrk(port: int, headers: dict[str, str], seconds: int, host: str = "api") -> float:
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "-H", f"Host: {host}"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed responses: {out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def check(port: int, headers: dict[str, str], want: str) -> None:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Host": "api", **headers})
    body = c.getresponse().read().decode()
    c.close()
    assert body == want, (headers, body, want)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", default="0,10,100,1000")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is reported")
    ap.add_argument("--contrast", action="store_true", help="also run Istio-style linear regex routes")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    key_counts = [int(k) for k in args.keys.split(",")]
    # The key used for sandbox traffic is the last one, so a linear scan would have to pass all others.
    kinds = {
        "baseline, no key": lambda n: ({}, "baseline"),
        "baseline, baggage of other members": lambda n: ({"baggage": "userId=alice,sessionId=x1"}, "baseline"),
        "sandbox, header": lambda n: ({"x-meshforge-routing-key": f"pr-{max(n - 1, 0):04d}" if n else "nobody"},
                                      "sandbox" if n else "baseline"),
        "sandbox, baggage": lambda n: ({"baggage": f"userId=alice, meshforge-routing-key=pr-{max(n - 1, 0):04d}" if n
                                        else "userId=alice, meshforge-routing-key=nobody"}, "sandbox" if n else "baseline"),
    }
    modes = ["matcher"] + (["regex"] if args.contrast else [])
    samples: dict[tuple[str, int, str], list[float]] = {}
    up_admin, base_port, sb_port = free_port(), free_port(), free_port()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.enter_context(Envoy(upstream_config(up_admin, {"baseline": base_port, "sandbox": sb_port}), up_admin,
                                  name="upstream"))
        # One sidecar per (mode, key count), all started up front; rounds then rotate through every
        # cell, so drift on this shared machine spreads over all cells instead of skewing one ratio.
        sidecars = {}
        for mode in modes:
            for n in key_counts:
                d = Path(tmp) / f"{mode}-{n}"
                d.mkdir()
                specs(d, n, base_port, sb_port)
                out, admin = free_port(), free_port()
                config = sidecar_config(d, out, admin)
                if mode == "regex":
                    config = istio_style_routes(config)
                stack.enter_context(Envoy(config, admin, name=f"sidecar-{mode}-{n}"))
                sidecars[(mode, n)] = out
        cells = [(mode, n, kind) for mode in modes for kind in kinds for n in key_counts
                 if not (mode == "regex" and "header" in kind)]
        for mode, n, kind in cells:
            headers, want = kinds[kind](n)
            check(sidecars[(mode, n)], headers, want)
            wrk(sidecars[(mode, n)], headers, 1)  # warm-up
        for _ in range(args.rounds):
            for mode, n, kind in cells:
                headers, _ = kinds[kind](n)
                samples.setdefault((mode, n, kind), []).append(wrk(sidecars[(mode, n)], headers, args.seconds))
    results = {k: statistics.median(v) for k, v in samples.items()}
    print("Data plane: real Envoy 1.40 sidecar (concurrency 1), wrk -t1 -c32, direct-response upstream Envoy")
    for mode in modes:
        title = "meshforge (matcher tree + Lua baggage extraction)" if mode == "matcher" else \
            "contrast: Istio-style linear regex routes on baggage"
        print(f"\n{title}")
        print(f"{'request':40s}" + "".join(f"{n:>10d} keys" for n in key_counts))
        for kind in kinds:
            if (mode, key_counts[0], kind) not in results:
                continue
            base = results[(mode, key_counts[0], kind)]
            cells = []
            for n in key_counts:
                r = results[(mode, n, kind)]
                cells.append(f"{r:8.0f}/s" if n == key_counts[0] else f"{r / base:9.2f}x")
            print(f"{kind:40s}" + "".join(f"{c:>15s}" for c in cells))
    print(f"\n(first column: requests/s at {key_counts[0]} keys; others: ratio to it; each cell the median of "
          f"{args.rounds} runs of {args.seconds} s, rounds interleaved across cells)")


if __name__ == "__main__":
    main()
