"""Golden cases: golden/<case>/input/ → golden/<case>/expected/<output>.

Each backend contributes named outputs (text). `pytest --update-golden` rewrites them and deletes
expected files the run no longer produces; every such change is reviewed in the diff.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from meshforge.diagnostics import render_text
from meshforge.pipeline import compile_paths

from .conftest import SHARED

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def cases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "input").is_dir())


def extra_inputs(case: str) -> list[str]:
    """Inputs that live in ../shared (never copied here), listed in <case>/extra-inputs.txt."""
    f = GOLDEN / case / "extra-inputs.txt"
    if not f.is_file():
        return []
    return [line.strip().replace("$SHARED", str(SHARED)) for line in f.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


@contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def outputs(case: str) -> dict[str, str]:
    """Every output of a case, by relative file name under expected/."""
    from .golden_backends import BACKENDS

    with chdir(GOLDEN / case):
        model, diags = compile_paths(["input"] + extra_inputs(case), NOW)
        text = render_text(diags.items) or "no diagnostics\n"
        out = {"diagnostics.txt": text.replace(str(SHARED), "$SHARED")}
        if model is not None:
            for backend in BACKENDS:
                out.update(backend(model))
    return out


def check(case: str, update: bool) -> list[str]:
    """Compare (or rewrite) a case; returns the names of outputs that differ."""
    expected_dir = GOLDEN / case / "expected"
    got = outputs(case)
    existing = {str(p.relative_to(expected_dir)) for p in expected_dir.rglob("*") if p.is_file()} \
        if expected_dir.exists() else set()
    if update:
        for name in existing - set(got):
            (expected_dir / name).unlink()
        for name, text in got.items():
            p = expected_dir / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.exists() or p.read_text() != text:
                p.write_text(text)
        return []
    differ = sorted(n for n in set(got) | existing
                    if n not in got or n not in existing or (expected_dir / n).read_text() != got[n])
    return differ
