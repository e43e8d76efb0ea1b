"""The worked CI example: its meshforge steps, run as the pipeline runs them, open then close a sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ci"


def steps(action: str) -> list[str]:
    workflow = yaml.safe_load((EXAMPLE / "sandbox.yaml").read_text())
    out = []
    for step in workflow["jobs"]["sandbox"]["steps"]:
        if not str(step.get("name", "")).startswith("meshforge:"):
            continue
        cond = step.get("if", "")
        if (cond == "github.event.action != 'closed'" and action == "closed") or \
                (cond == "github.event.action == 'closed'" and action != "closed"):
            continue
        out.append(step["run"])
    return out


def run(action: str, repo: Path) -> None:
    env = dict(os.environ, PR="pr-7", BRANCH="feature/Cart_Totals", GITOPS=str(repo / "gitops"),
               IMAGE="registry.example/cartservice:0123abc", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for script in steps(action):
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, check=True, cwd=repo)


def test_the_pipeline_opens_and_closes_a_sandbox(tmp_path):
    shutil.copytree(EXAMPLE / "gitops", tmp_path / "gitops")
    run("opened", tmp_path)
    sandbox = yaml.safe_load((tmp_path / "gitops/sandboxes/pr-7.yaml").read_text())
    assert sandbox["metadata"] == {"name": "feature-cart-totals", "labels": {"pr": "pr-7"}}
    rendered = tmp_path / "gitops/rendered"
    k8s = sorted(p.name for p in (rendered / "kubernetes/default").iterdir())
    assert k8s == ["deployment-cartservice-feature-cart-totals.yaml", "service-cartservice-feature-cart-totals.yaml"]
    fork = yaml.safe_load((rendered / "kubernetes/default" / k8s[0]).read_text())
    assert fork["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/cartservice:0123abc"
    vs = (rendered / "istio/default/virtualservice-meshforge-cartservice.yaml").read_text()
    assert "cartservice-feature-cart-totals.default.svc.cluster.local" in vs
    run("closed", tmp_path)
    assert not (tmp_path / "gitops/sandboxes/pr-7.yaml").exists()
    left = [p for p in rendered.rglob("*.yaml")]
    assert left == []  # everything meshforge rendered for the sandbox is gone; a GitOps prune follows
