"""Shared fixtures: paths to ../shared (overridable), the one fixed clock, a CLI runner, a spec
writer, and the --update-golden flag."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MESHFORGE_SHARED", REPO.parent / "shared"))
BOUTIQUE = SHARED / "datasets" / "online-boutique" / "kubernetes-manifests.yaml"
ISTIO_CRDS = SHARED / "istio" / "crd-all.gen.yaml"
NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)  # the clock of every test that fixes one


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden/ expected outputs from the current code (review the diff!)")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture
def cli():
    from meshforge.cli import main

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def write(tmp_path):
    """write({"a.yaml": text, ...}) -> the directory."""

    def _write(files: dict[str, str], sub: str = "specs") -> Path:
        d = tmp_path / sub
        for name, text in files.items():
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return d

    return _write
