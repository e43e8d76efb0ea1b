"""Latency the reverse tunnel adds (issue 28): a keyed request edge -> web -> cart -> pay, where cart is
- a laptop's (`meshforge connect`, over the reverse tunnel: sidecar -> tunnel node -> internal listener ->
  reverse connection -> the laptop's Envoy -> the process), or
- an in-cluster fork of the same application (the sidecar sends it straight to the fork's endpoint), or
- a laptop's key with no laptop attached (the tunnel node's "no laptop" answer retried on the baseline),
against the baseline (no key), in the network namespace of tests/connect_harness.py (needs root), same run.
Requests go one after another (latency, not throughput); the applications are small Python servers, so the
differences between the rows, not the absolute figures, are what this measures. Prints p50/p90/p99 per row and
the tunnel's added p50.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.connect_harness import kernel_reason, shared_environment  # noqa: E402


def measure(env, key: str | None, name: str, seconds: float) -> dict:
    load = env.start_load(key, name)
    time.sleep(seconds)
    return env.stop_load(load, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per row")
    ap.add_argument("--rounds", type=int, default=3, help="rows are measured in this many interleaved rounds")
    args = ap.parse_args()
    reason = kernel_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mf-bench-connect-"))
    rows: dict[str, list[dict]] = {"baseline (no key)": [], "in-cluster fork": [], "laptop over the tunnel": [],
                                   "laptop's key, no laptop": []}
    try:
        with shared_environment(tmp) as env:
            env.connect("alice", "alice")
            env.wait_edge(["web", "cart@alice", "pay"], "alice")
            env.wait_edge(["web", "cart@pr", "pay"], "pr")
            for r in range(args.rounds):
                for label, key in (("baseline (no key)", None), ("in-cluster fork", "pr"),
                                   ("laptop over the tunnel", "alice"), ("laptop's key, no laptop", "bob")):
                    out = measure(env, key, f"{r}-{key}", args.seconds)
                    assert set(out["statuses"]) == {"200"}, out
                    rows[label].append(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'row':28} {'requests':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}   (median of {args.rounds} rounds)")
    med = {}
    for label, outs in rows.items():
        def m(q):
            values = sorted(o["ms"][str(q)] for o in outs)  # JSON: the percentiles' keys are strings
            return values[len(values) // 2]
        med[label] = {q: m(q) for q in (50, 90, 99)}
        print(f"{label:28} {sum(o['requests'] for o in outs):9d} {med[label][50]:8.2f} {med[label][90]:8.2f} "
              f"{med[label][99]:8.2f}")
    tunnel, fork = med["laptop over the tunnel"][50], med["in-cluster fork"][50]
    absent, base = med["laptop's key, no laptop"][50], med["baseline (no key)"][50]
    print(f"the tunnel adds {tunnel - fork:.2f} ms at p50 ({tunnel / fork:.2f}x the in-cluster fork); "
          f"a laptop's key with no laptop attached costs {absent - base:.2f} ms over the baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
