"""Benchmark: `meshforge validate` on 1,000 services and 1,000 sandboxes (goal: under 2 s, whole command).

Prints wall time of the real command (process start included) over several runs, and the
in-process split between loading YAML and compiling the model.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from meshforge.synthetic import generate


def main(services: int = 1000, sandboxes: int = 1000, runs: int = 5) -> None:
    from meshforge.diagnostics import Diagnostics
    from meshforge.pipeline import compile_documents
    from meshforge.source import load_paths

    with tempfile.TemporaryDirectory() as tmp:
        d = generate(Path(tmp) / "specs", services, sandboxes)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "meshforge.cli", "validate", str(d)], capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            assert r.returncode == 0, r.stdout + r.stderr
        diags = Diagnostics()
        t0 = time.perf_counter()
        docs = load_paths([str(d)], diags)
        t1 = time.perf_counter()
        model = compile_documents(docs, diags, datetime.now(timezone.utc))
        t2 = time.perf_counter()
        assert model is not None
    print(f"validate {services} services + {sandboxes} sandboxes ({len(docs)} documents)")
    print(f"  command wall time: median {statistics.median(times):.3f} s, min {min(times):.3f} s over {runs} runs "
          f"(goal < 2 s)")
    print(f"  in process: load YAML {t1 - t0:.3f} s, schema + resolve {t2 - t1:.3f} s")


if __name__ == "__main__":
    main()
