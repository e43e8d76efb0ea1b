"""Synthetic meshes for benchmarks and tests: N baseline services and M sandboxes (1-5 forks each).

Input: sizes and a seed. Output: spec files in a directory, the same bytes for the same seed. Services are split over files of 100 and sandboxes are one file each,
the way a GitOps repository holding one sandbox per pull request looks.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import yaml


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


def generate(out: Path, services: int = 1000, sandboxes: int = 1000, seed: int = 7, deps: int | None = 3) -> Path:
    """`deps` callees per service (dependsOn), or None to leave dependsOn out (every proxy told everything)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    per_file = 100
    for start in range(0, services, per_file):
        svcs = []
        for i in range(start, min(services, start + per_file)):
            port = {"name": "grpc", "port": 9090} if i % 3 == 0 else {"name": "http", "port": 8080}
            svc = {"name": service_name(i), "ports": [port], "labels": {"app": service_name(i), "version": "v1"}}
            if deps is not None:
                svc["dependsOn"] = sorted({service_name(j) for j in rng.sample(range(services), min(deps, services))
                                           if j != i})
            svcs.append(svc)
        doc = {"apiVersion": "meshforge.dev/v1alpha1", "kind": "Baseline",
               "metadata": {"name": f"staging-{start // per_file:03d}", "namespace": "bench"},
               "spec": {"services": svcs}}
        (out / f"baseline-{start // per_file:03d}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sb_dir = out / "sandboxes"
    sb_dir.mkdir(exist_ok=True)
    for k in range(sandboxes):
        write_sandbox(sb_dir, k, rng, services)
    return out


def sandbox_doc(k: int, rng: random.Random, services: int, variant: int = 0) -> dict:
    forks = []
    for j in sorted(rng.sample(range(services), rng.randint(1, 5))):
        forks.append({"service": service_name(j),
                      "to": {"host": f"{service_name(j)}-pr-{k}-{variant}.bench.svc.cluster.local"}})
    return {"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": f"pr-{k:04d}", "namespace": "bench"},
            "spec": {"forks": forks}}


def write_sandbox(sb_dir: Path, k: int, rng: random.Random, services: int, variant: int = 0) -> Path:
    path = sb_dir / f"pr-{k:04d}.yaml"
    path.write_text(yaml.safe_dump(sandbox_doc(k, rng, services, variant), sort_keys=False))
    return path


if __name__ == "__main__":  # python -m meshforge.synthetic OUT --services N --sandboxes M
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--sandboxes", type=int, default=1000)
    args = ap.parse_args()
    generate(args.out, args.services, args.sandboxes)
    print(f"wrote {args.services} services and {args.sandboxes} sandboxes to {args.out}")
