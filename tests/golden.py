"""Golden cases: golden/<case>/input/ → golden/<case>/expected/<output>.

Every case records its diagnostics, the resolved model (`model.json`) and each backend's files
(`<backend>/...`, from the backend table). `pytest --update-golden` rewrites them and deletes
expected files the run no longer produces; every such change is reviewed in the diff.
"""

from __future__ import annotations

import functools
import json
import os
from contextlib import contextmanager
from pathlib import Path

from meshforge import backends
from meshforge.diagnostics import Diagnostics, render_text
from meshforge.model import Model, to_json
from meshforge.pipeline import compile_paths

from .conftest import NOW, SHARED

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def cases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "input").is_dir())


def extra_inputs(case: str) -> list[str]:
    """Inputs that live in ../shared (never copied here), listed in <case>/extra-inputs.txt."""
    f = GOLDEN / case / "extra-inputs.txt"
    if not f.is_file():
        return []
    return [line.strip().replace("$SHARED", str(SHARED)) for line in f.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def namespace(case: str) -> str:
    """The `--namespace` a case is compiled with: <case>/namespace.txt, else default."""
    f = GOLDEN / case / "namespace.txt"
    return f.read_text().strip() if f.is_file() else "default"


@contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _unshared(text: str) -> str:
    return text.replace(str(SHARED), "$SHARED")


def model_json(model: Model) -> str:
    return _unshared(json.dumps(to_json(model), indent=1, sort_keys=True, ensure_ascii=False)) + "\n"


def backend_outputs(model: Model) -> dict[str, str]:
    """Every backend's files for a model. A backend that reports errors records only its diagnostics
    (the CLI writes nothing then either)."""
    out: dict[str, str] = {}
    for name in backends.BACKENDS:
        diags = Diagnostics()
        files = backends.render(model, name, diags)
        if diags.has_errors:
            out[f"{name}/diagnostics.txt"] = _unshared(render_text(diags.items))
            continue
        out.update({f"{name}/{path}": text for path, text in files.items()})
        if diags.items:
            out[f"{name}/diagnostics.txt"] = _unshared(render_text(diags.items))
    return out


def outputs(case: str) -> dict[str, str]:
    """Every output of a case, by relative file name under expected/: computed once per case in a test process
    (the golden comparison and the strict schema checks read the same outputs), a fresh dict each call."""
    return dict(_outputs(case))


@functools.lru_cache(maxsize=None)
def _outputs(case: str) -> tuple[tuple[str, str], ...]:
    with chdir(GOLDEN / case):
        model, diags = compile_paths(["input"] + extra_inputs(case), NOW, namespace(case))
        out = {"diagnostics.txt": _unshared(render_text(diags.items) or "no diagnostics\n")}
        if model is not None:
            out["model.json"] = model_json(model)
            out.update(backend_outputs(model))
    return tuple(out.items())


def expected(case: str) -> dict[str, str]:
    d = GOLDEN / case / "expected"
    return {str(p.relative_to(d)): p.read_text() for p in d.rglob("*") if p.is_file()} if d.exists() else {}


def check(case: str, update: bool) -> list[str]:
    """Compare (or rewrite) a case; returns the names of outputs that differ."""
    expected_dir = GOLDEN / case / "expected"
    got = outputs(case)
    existing = expected(case)
    if update:
        for name in set(existing) - set(got):
            (expected_dir / name).unlink()
        for name, text in got.items():
            p = expected_dir / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if existing.get(name) != text:
                p.write_text(text)
        return []
    return sorted(n for n in set(got) | set(existing) if got.get(n) != existing.get(n))
