"""Transparent capture benchmark: the cost per request of capture (iptables REDIRECT + Envoy's original_dst)
against the HTTP-proxy mode, same run, same sidecar, same backend.

In the network namespace of tests/netns_harness.py (needs root), wrk runs as the applications' user:
- captured: `http://cart:8080/` by name, as an application with no proxy settings calls it: netfilter
  redirects the connection to the sidecar, which restores the original destination and routes by Host;
- HTTP proxy: `http://127.0.0.1:15001/` with `Host: cart:8080`, as an `http_proxy` client sends it (loopback
  is never captured): the same listener, the same routes, no netfilter redirect.
Both with the routing key (to the fork) and without. The backend is a small Python HTTP server (it bounds the
throughput; the ratio is what matters). Prints requests/s and latency p50/p99 per mode and the ratios.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netns_harness import APP_UID, kernel_reason, transparent_mesh  # noqa: E402


def wrk(ns, url: str, headers: dict[str, str], seconds: int) -> tuple[float, float, float]:
    cmd = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    r = ns.run(*cmd, url, user=APP_UID)
    out = r.stdout
    if r.returncode != 0 or re.search(r"Non-2xx or 3xx responses: (\d+)", out) or "Socket errors" in out:
        raise RuntimeError(out + r.stderr)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        return float(m[1]) * {"us": 0.001, "ms": 1, "s": 1000}[m[2]]
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), ms("50"), ms("99")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="runs per cell, interleaved; the median is reported")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    reason = kernel_reason()
    if reason:
        sys.exit(reason)
    key = {"baggage": "meshforge-routing-key=pr-1"}
    cells = {("captured", "no key"): ("http://cart:8080/", {}),
             ("captured", "key"): ("http://cart:8080/", key),
             ("HTTP proxy", "no key"): ("http://127.0.0.1:15001/", {"Host": "cart:8080"}),
             ("HTTP proxy", "key"): ("http://127.0.0.1:15001/", {"Host": "cart:8080", **key})}
    results: dict = {c: [] for c in cells}
    with tempfile.TemporaryDirectory() as tmp, transparent_mesh(Path(tmp)) as ns:
        for _ in range(args.rounds):
            for cell, (url, headers) in cells.items():
                results[cell].append(wrk(ns, url, headers, args.seconds))
    med = {c: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for c, rs in results.items()}
    print(f"{'mode':12} {'request':8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for (mode, req), (rps, p50, p99) in med.items():
        print(f"{mode:12} {req:8} {rps:8.0f} {p50:8.2f} {p99:8.2f}")
    for req in ("no key", "key"):
        c, p = med[("captured", req)], med[("HTTP proxy", req)]
        print(f"captured / HTTP proxy, {req}: throughput {c[0] / p[0]:.2f}x, p50 {c[1] / p[1]:.2f}x, "
              f"p99 {c[2] / p[2]:.2f}x")


if __name__ == "__main__":
    main()
