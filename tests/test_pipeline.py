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
