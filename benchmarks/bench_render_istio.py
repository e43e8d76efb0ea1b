"""Benchmark: `meshforge render --format istio -o DIR` for Online Boutique + 500 sandboxes (goal: under 2 s).

The sandboxes fork 1-3 of Online Boutique's ten HTTP/gRPC services each; every fifth uses static
endpoints and every seventh a subset (the baseline pods get a version label for that).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MESHFORGE_SHARED", REPO.parent / "shared"))
BOUTIQUE = SHARED / "datasets" / "online-boutique" / "kubernetes-manifests.yaml"
ROUTABLE = ["adservice", "cartservice", "checkoutservice", "currencyservice", "emailservice", "frontend",
            "paymentservice", "productcatalogservice", "recommendationservice", "shippingservice"]


def write_sandboxes(d: Path, n: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        forks = []
        for svc in sorted(rng.sample(ROUTABLE, rng.randint(1, 3))):
            if i % 5 == 0:
                to = {"endpoints": [{"address": f"10.30.{i // 250}.{i % 250 + 1}", "port": 8080}]}
            elif i % 7 == 0 and svc == "cartservice":
                to = {"subset": {"labels": {"version": f"pr-{i}"}}}
            else:
                to = {"host": f"{svc}-pr-{i}.default.svc.cluster.local"}
            forks.append({"service": svc, "to": to})
        docs.append({"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox",
                     "metadata": {"name": f"pr-{i:04d}"}, "spec": {"forks": forks}})
    (d / "sandboxes.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    # cartservice's baseline pods need a label that subsets can differ on
    manifests = BOUTIQUE.read_text().replace("      labels:\n        app: cartservice\n",
                                             "      labels:\n        app: cartservice\n        version: v1\n")
    (d / "boutique.yaml").write_text(manifests)


def main(n: int = 500, runs: int = 5) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "specs"
        d.mkdir()
        write_sandboxes(d, n)
        out = Path(tmp) / "out"
        times = []
        for i in range(runs):
            if i % 2 == 0 and out.exists():
                subprocess.run(["rm", "-rf", str(out)], check=True)
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "meshforge.cli", "render", str(d), "--format", "istio",
                                "-o", str(out), "--now", "2026-11-26T00:00:00Z"], capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            assert r.returncode == 0, r.stderr[-2000:]
        files = [p for p in out.rglob("*.yaml")]
        size = sum(p.stat().st_size for p in files)
    print(f"render --format istio: Online Boutique + {n} sandboxes -> {len(files)} files, {size / 1e6:.1f} MB")
    print(f"  command wall time: median {statistics.median(times):.3f} s, min {min(times):.3f} s over {runs} runs "
          "(cold and warm output directory alternating; goal < 2 s)")


if __name__ == "__main__":
    main()
