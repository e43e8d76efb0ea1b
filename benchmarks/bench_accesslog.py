"""Access-logging cost: a real Envoy sidecar's throughput with and without access logs to `serve`.

Three `meshforge serve` processes on the same specs: access logs as by default (at most 100 logged
requests a second per listener), every request logged (`--access-log-rate 0`), and `--no-access-logs`;
one real Envoy sidecar bootstrapped against each (node `client.default`, which calls `api`, forked by
one sandbox). Upstream is a direct-response Envoy; load is wrk -t1 -c32 through each sidecar, rounds
interleaved so that drift on this shared machine spreads over all. The serve that receives the logs
runs on the same 2-core machine, so its work is part of the measured cost. With two CPUs or more the
sidecars are pinned to CPU 0 and everything else (wrk, upstream, the serves) to CPU 1 (`--no-pin` to
leave it to the scheduler): the sidecar's own cost then sets the throughput, not who ran when.
Goal: throughput with access logs >= 0.9x without.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench_dataplane import upstream_config, wrk
from procstat import cpu_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve_harness import Server, Sidecar, wait_until  # noqa: E402

from meshforge.envoyproc import Envoy, free_port  # noqa: E402


def specs(base: int, sandbox: int) -> str:
    return f"""apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging}}
spec:
  services:
  - {{name: client, ports: [{{name: http, port: 80}}], dependsOn: [api]}}
  - {{name: api, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: {base}}}]}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-1}}
spec:
  forks: [{{service: api, to: {{endpoints: [{{address: 127.0.0.1, port: {sandbox}}}]}}}}]
"""


MODES = {"without": ("--no-access-logs",), "default (100/s)": (), "every request": ("--access-log-rate", "0")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                    help="sidecars on CPU 0, the rest on CPU 1")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    kinds = {"no key": {}, "key in baggage": {"baggage": "userId=7, meshforge-routing-key=pr-1"},
             "key in header": {"x-meshforge-routing-key": "pr-1"}}
    samples: dict[tuple[str, str], list[float]] = {}
    up_admin, base, sb = free_port(), free_port(), free_port()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "specs"
        d.mkdir()
        (d / "specs.yaml").write_text(specs(base, sb))
        upstream = stack.enter_context(Envoy(upstream_config(up_admin, {"baseline": base, "sandbox": sb}), up_admin, name="upstream"))
        sidecars, servers, envoys = {}, {}, {}
        for mode, extra in MODES.items():
            server = servers[mode] = stack.enter_context(Server([d], args=extra))
            envoys[mode] = stack.enter_context(Sidecar("client.default", server))
            sidecars[mode] = envoys[mode].outbound
            wait_until(lambda port=sidecars[mode]: _body(port) == "sandbox", 20, what="sidecar configured")
        if args.pin:
            for envoy in envoys.values():
                _pin(envoy.proc.pid, 0)
            for pid in [upstream.proc.pid, os.getpid()] + [s.proc.pid for s in servers.values()]:
                _pin(pid, 1)  # wrk, started from here, inherits it
        for mode, port in sidecars.items():
            for headers in kinds.values():
                wrk(port, headers, 1)  # warm-up
        cpu = {mode: -cpu_seconds(servers[mode].proc.pid) for mode in servers}
        envoy_cpu: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):
            for kind, headers in kinds.items():
                for mode, port in sidecars.items():
                    before = cpu_seconds(envoys[mode].proc.pid)
                    rate = wrk(port, headers, args.seconds)
                    samples.setdefault((mode, kind), []).append(rate)
                    # the sidecar's CPU per request: its own cost, whatever else runs on the machine
                    used = cpu_seconds(envoys[mode].proc.pid) - before
                    envoy_cpu[(mode, kind)] = envoy_cpu.get((mode, kind), 0.0) + used / (rate * args.seconds)
        for mode in servers:
            cpu[mode] += cpu_seconds(servers[mode].proc.pid)
    print("Access logging: real Envoy 1.40 sidecar (concurrency 1) over ADS, wrk -t1 -c32, direct-response upstream"
          + (", sidecar pinned to CPU 0, the rest to CPU 1" if args.pin else ""))
    print("throughput (ratio to without) | sidecar CPU per request")
    print(f"{'request':16s}" + "".join(f"{m:>28s}" for m in MODES))
    for kind in kinds:
        without = statistics.median(samples[("without", kind)])
        cells = []
        for mode in MODES:
            rate = statistics.median(samples[(mode, kind)])
            cells.append(f"{rate:7.0f}/s {rate / without:4.2f}x {envoy_cpu[(mode, kind)] / args.rounds * 1e6:6.1f} us")
        print(f"{kind:16s}" + "".join(f"{c:>28s}" for c in cells))
    print(f"\n(median of {args.rounds} runs of {args.seconds} s each, rounds interleaved)")
    wall = args.rounds * len(kinds) * args.seconds
    for mode, seconds in cpu.items():
        print(f"serve {mode}: {seconds:.1f} s CPU during its {wall} s of load ({seconds / wall:.0%} of a core)")


def _pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` onto one CPU."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def _body(port: int) -> str:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", "/", headers={"Host": "api", "x-meshforge-routing-key": "pr-1"})
        return c.getresponse().read().decode()
    finally:
        c.close()


if __name__ == "__main__":
    main()
