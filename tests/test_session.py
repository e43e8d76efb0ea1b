"""The serve session: the stages kept warm, one `Change` between them, and `verify()` that catches a stage
whose incremental result differs from its result from scratch."""

from __future__ import annotations

from meshforge import backends
from meshforge.emit.xds.compiler import XdsCompiler
from meshforge.session import Session

from .conftest import BASELINE, NOW
from .specs import sandbox


def _write(d, name, text):
    tmp = d / (name + ".tmp~")
    tmp.write_text(text)
    tmp.replace(d / name)
    return str(d / name)


def test_a_change_names_what_differs_and_each_stage_looks_at_that_alone(tmp_path):
    (tmp_path / "baseline.yaml").write_text(BASELINE)
    _write(tmp_path, "a.yaml", sandbox("a", ("cartservice", "cart-a.example")))
    s = Session([str(tmp_path)])
    first = s.compile(NOW)
    assert first.snapshot is not None and s.verify() == []
    changed = _write(tmp_path, "b.yaml", sandbox("b", ("checkout", "checkout-b.example")))
    s.compile(NOW, [changed])
    change = s._last[1].change
    assert change.keys == {"b"} and not change.services and not change.settings and not change.edge
    assert s.workspace.incremental_compiles == 1 and s.verify() == []
    # the Baseline changes: the services may differ, and every stage starts from what it has
    (tmp_path / "baseline.yaml").write_text(BASELINE.replace("version: v1", "version: v2"))
    s.compile(NOW, [str(tmp_path / "baseline.yaml")])
    assert s._last[1].change.services and s.verify() == []


def test_verify_catches_a_stage_that_misses_a_change(tmp_path, monkeypatch):
    """A compiler that ignores the keys the change names keeps the old routes: verify says where."""
    (tmp_path / "baseline.yaml").write_text(BASELINE)
    s = Session([str(tmp_path)])
    s.compile(NOW)
    monkeypatch.setattr(XdsCompiler, "_compile_changes",
                        lambda self, model, keys: (dict(self._nodes), self._live))  # a bug: nothing is rebuilt
    s.compile(NOW, [_write(tmp_path, "a.yaml", sandbox("a", ("cartservice", "cart-a.example")))])
    problems = s.verify()
    assert problems and all(p.startswith("xds: node ") for p in problems)
    assert any("routes meshforge-outbound" in p or "clusters" in p for p in problems)


def test_the_check_is_incremental_and_verify_finds_what_it_missed(tmp_path, monkeypatch):
    (tmp_path / "baseline.yaml").write_text(BASELINE)
    s = Session([str(tmp_path)])
    s.compile(NOW)
    seen = []
    real = backends.check
    monkeypatch.setattr(backends, "check", lambda model, backend, diags, keys=None:
                        seen.append(keys) or real(model, backend, diags, keys))
    s.compile(NOW, [_write(tmp_path, "a.yaml", sandbox("a", ("cartservice", "cart-a.example")))])
    assert seen == [frozenset({"a"})]  # the keys the change names, not every key


def test_check_verify_reports_what_a_full_check_finds_and_update_missed(tmp_path, monkeypatch):
    """A checker told (wrongly) that the subset fork's key passed before reports nothing; verify finds MF301."""
    from meshforge.pipeline import compile_paths

    (tmp_path / "baseline.yaml").write_text(BASELINE)
    (tmp_path / "a.yaml").write_text(
        "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: a, namespace: shop}\n"
        "spec:\n  forks:\n  - service: cartservice\n    to: {subset: {labels: {version: a}}}\n")
    model, diags = compile_paths([str(tmp_path)], NOW)
    checker = backends.Checker(backends.get("xds"))
    monkeypatch.setattr(type(model.change), "keys_since", lambda self, token, services=False: frozenset())  # the bug
    checker.update(model, diags)
    assert not diags.has_errors
    (missed,) = checker.verify(model)
    assert missed.startswith("check: missed ") and "MF301" in missed


def test_serve_verify_rebuilds_after_every_reload_and_finds_nothing_amiss(tmp_path):
    import json

    from .serve_harness import Server, wait_until

    (tmp_path / "baseline.yaml").write_text(BASELINE)
    with Server([tmp_path], args=("--verify",)) as server:
        wait_until(lambda: server.metric("meshforge_reloads_total", 'result="unchanged"') >= 1, 10, what="watching")
        _write(tmp_path, "a.yaml", sandbox("a", ("cartservice", "cart-a.example")))

        def clusters():
            return {c["name"] for c in json.loads(server.get("/debug/config?node=frontend.shop")[1])["resources"]["Cluster"]}

        wait_until(lambda: any("|a|" in c for c in clusters()), 10, what="the sandbox served")
        assert server.metric("meshforge_reloads_total", 'result="unverified"') == 0, server.log()[-3000:]
        assert "--verify" not in server.log()
