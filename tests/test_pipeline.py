"""pipeline: one compile path; the Workspace re-parses only changed files; lowering passes run."""

from __future__ import annotations

import dataclasses
import os

from meshforge.diagnostics import Diagnostics
from meshforge.model import HostDestination
from meshforge.pipeline import Workspace, compile_documents, compile_paths
from meshforge.source import load_paths

from .conftest import BASELINE, NOW, sandbox


def test_documents_and_paths_compile_to_the_same_model(write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c1.shop.svc.cluster.local"))})
    diags = Diagnostics()
    from_docs = compile_documents(load_paths([str(d)], diags), diags, NOW)
    from_paths, _ = compile_paths([str(d)], NOW)
    assert from_docs == from_paths and from_paths is not None


def test_workspace_reparses_only_changed_files(write):
    d = write({"b.yaml": BASELINE, "s1.yaml": sandbox("pr-1", ("cartservice", "c1.x")),
               "s2.yaml": sandbox("pr-2", ("checkout", "c2.x"))})
    ws = Workspace([str(d)])
    first, _ = ws.compile(NOW)
    assert ws.files_parsed == 3
    again, _ = ws.compile(NOW)
    assert ws.files_parsed == 3 and again == first
    (d / "s2.yaml").write_text(sandbox("pr-2", ("checkout", "c3.x")))
    changed, _ = ws.compile(NOW)
    assert ws.files_parsed == 4
    assert changed.key_by_name["pr-2"].forks[0].destination == HostDestination("c3.x")
    os.utime(d / "s1.yaml")  # touched, same bytes: re-read, not re-parsed
    ws.compile(NOW)
    assert ws.files_parsed == 4
    (d / "s1.yaml").unlink()
    gone, _ = ws.compile(NOW)
    assert "pr-1" not in gone.key_by_name


def test_invalid_specs_give_no_model(write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("nope", "c.x"))})
    model, diags = Workspace([str(d)]).compile(NOW)
    assert model is None and [x.code for x in diags.errors()] == ["MF201"]


def test_lowering_passes_run_in_order_after_resolution(write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c1.x"))})
    seen = []

    def first(model):
        seen.append("first")
        return dataclasses.replace(model, keys=())

    def second(model):
        seen.append(("second", len(model.keys)))
        return model

    model, _ = Workspace([str(d)], passes=(first, second)).compile(NOW)
    assert seen == ["first", ("second", 0)] and model.keys == ()
    bad = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("nope", "c1.x"))}, sub="bad")
    seen.clear()
    assert Workspace([str(bad)], passes=(first,)).compile(NOW)[0] is None and seen == []  # never on invalid input


def test_incremental_resolution_gives_what_a_fresh_compile_gives(tmp_path, monkeypatch):
    """The Workspace reuses services and sandboxes whose declarations did not change; after every kind of
    change its model and diagnostics equal a fresh compile's, byte for byte."""
    import random
    from datetime import timedelta

    from meshforge.model import to_json
    from meshforge.synthetic import generate, write_sandbox

    d = generate(tmp_path / "specs", 40, 30, deps=2)
    ws = Workspace([str(d)])
    rng = random.Random(5)
    (d / "sandboxes" / "expiring.yaml").write_text(
        "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: expiring, namespace: bench}\n"
        "spec:\n  expiresAt: \"2026-11-26T01:00:00Z\"\n  forks: [{service: svc-0001, to: {host: x.bench.svc.cluster.local}}]\n")
    steps = [
        lambda: write_sandbox(d / "sandboxes", 3, rng, 40, variant=1),  # a sandbox edited
        lambda: (d / "sandboxes" / "pr-0004.yaml").unlink(),  # one deleted
        lambda: (d / "baseline-000.yaml").write_text((d / "baseline-000.yaml").read_text().replace(
            "svc-0002", "svc-0002x")),  # a service renamed: forks of svc-0002 become errors
        lambda: (d / "baseline-000.yaml").write_text((d / "baseline-000.yaml").read_text().replace(
            "svc-0002x", "svc-0002")),  # and back
        lambda: None,  # nothing changed, but the clock moves past an expiry
    ]
    from meshforge import resolve

    calls = []
    real = resolve._sandbox
    monkeypatch.setattr(resolve, "_sandbox", lambda sd, *a: calls.append(sd.name) or real(sd, *a))
    ws.compile(NOW)
    now = NOW
    for i, step in enumerate(steps):
        calls.clear()
        step()
        if i == len(steps) - 1:
            now = NOW + timedelta(hours=2)
        got, got_diags = ws.compile(now)
        fresh, fresh_diags = Workspace([str(d)]).compile(now)
        assert [x.to_text() for x in got_diags.items] == [x.to_text() for x in fresh_diags.items], i
        assert (got is None) == (fresh is None)
        if got is not None:
            assert to_json(got) == to_json(fresh), i
        if i == 0:
            assert calls[0] == "pr-0003" and len(calls) == 1 + 31  # the edited one, then the fresh compile's 31
    assert calls[0] == "expiring" and len(calls) == 1 + 30  # only the sandbox whose expiry state changed
    assert any(s.name == "expiring" and s.expired for s in got.sandboxes)
