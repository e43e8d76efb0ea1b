"""Benchmark: what hostile input and clients cost (issue 9's figures).

- the alias bomb (100 documents of 137k nodes each, a 19 KB file): time and peak memory to refuse it;
- deep nesting and a recursive alias: time to refuse;
- `/metrics` size and server RSS before and after a client asks for 20,000 unknown xDS type URLs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import rss

BOMB = "---\n".join(["a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                     "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"] * 100)


def refuse(name: str, text: str) -> None:
    code = ("import resource, sys, time\nfrom meshforge.pipeline import compile_paths\n"
            "t0 = time.perf_counter(); m, d = compile_paths([sys.argv[1]])\n"
            "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "[x.code for x in d.items])")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "in.yaml"
        f.write_text(text)
        baseline = subprocess.run([sys.executable, "-c", "import resource, meshforge.pipeline\n"
                                   "print(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                                  capture_output=True, text=True).stdout.split()
        out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True).stdout.split(None, 2)
    secs, rss, codes = float(out[0]), int(out[1]), out[2]
    print(f"  {name} ({len(text):,} bytes): refused in {secs * 1000:.1f} ms, peak RSS {rss / 1024:.0f} MiB "
          f"(interpreter with meshforge imported: {int(baseline[1]) / 1024:.0f} MiB), diagnostics {codes.strip()}")


def metrics_after_unknown_types() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.serve_harness import CLUSTER, SPEC, RawClient, Server, node

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "b.yaml").write_text(SPEC)
        with Server([tmp]) as s:
            c = RawClient(s.xds_port)
            c.send(node=node("web.shop"), type_url=CLUSTER)
            c.recv()
            before, rss0 = len(s.get("/metrics")[1]), rss(s.proc.pid) // 1024
            t0 = time.perf_counter()
            for i in range(20_000):
                c.send(type_url=f"type.googleapis.com/evil.T{i}")
            c.send(type_url=CLUSTER, version_info="x", response_nonce="stale")
            time.sleep(2)
            after, rss1 = len(s.get("/metrics")[1]), rss(s.proc.pid) // 1024
            c.close()
    print(f"  20,000 unknown type URLs on one stream ({time.perf_counter() - t0:.1f} s): /metrics {before:,} -> "
          f"{after:,} bytes; server RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB")


if __name__ == "__main__":
    print("hostile input")
    refuse("alias bomb, 100 documents x 137k nodes", BOMB)
    refuse("nesting 500 deep", "[" * 500 + "]" * 500)
    refuse("recursive alias", "a: &a [*a]\n")
    print("hostile client")
    metrics_after_unknown_types()
