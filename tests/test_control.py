"""server/control: a reload publishes what changed, keeps the last good configuration on errors and crashes, folds
reloads asked for while one runs, and schedules the next expiry. In process, with a fake compiler and snapshots;
serve's process end to end is tests/test_serve.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from meshforge.server.control import ControlPlane, Result


@dataclass
class FakeSnapshot:
    nodes: dict
    settings: tuple = ()

    def resources(self, node, port, host=None, transparent=False, accept=None):
        return {}


@dataclass
class FakeCompiler:
    """Hands out the results it is given, in order; records what each compile was told."""

    results: list
    paths: list = field(default_factory=lambda: ["specs"])
    calls: list = field(default_factory=list)

    def compile(self, now, changed):
        self.calls.append(changed)
        r = self.results.pop(0)
        if isinstance(r, Exception):
            raise r
        return r

    def inputs(self):
        raise AssertionError("not watched here")

    def verify(self):
        return []


def plane(*results) -> tuple[ControlPlane, FakeCompiler]:
    compiler = FakeCompiler(list(results))
    return ControlPlane(compiler, "127.0.0.1:0"), compiler


def reloads(cp: ControlPlane) -> dict[str, float]:
    return {s.labels["result"]: s.value for m in cp.metrics.reloads.collect() for s in m.samples
            if s.name.endswith("_total")}


def valid(cp: ControlPlane) -> float:
    return cp.metrics.registry.get_sample_value("meshforge_spec_valid")


def test_a_changed_snapshot_is_published_and_an_unchanged_one_is_not():
    cfg = object()
    a, same, other = FakeSnapshot({"web.shop": cfg}), FakeSnapshot({"web.shop": cfg}), FakeSnapshot({"web.shop": object()})
    cp, _ = plane(Result(a), Result(same), Result(other), Result(FakeSnapshot({"web.shop": cfg}, ("header",))))

    async def run():
        assert await cp.reload("start")
        assert cp.cache.snapshot is a and cp.cache.generation == 1
        assert await cp.reload("again")  # every node's very same config: nothing to push
        assert cp.cache.snapshot is a and cp.cache.generation == 1
        assert await cp.reload("edit")
        assert cp.cache.snapshot is other and cp.cache.generation == 2 and cp.cache.previous is a
        assert await cp.reload("settings")  # the same nodes under other mesh-wide settings: published
        assert cp.cache.generation == 3

    asyncio.run(run())
    assert reloads(cp) == {"ok": 3, "unchanged": 1}


def test_invalid_specs_and_a_crashing_compile_keep_the_last_good_configuration():
    good = FakeSnapshot({"web.shop": object()})
    cp, _ = plane(Result(good), Result(None, ["a.yaml:3:5: error[MF201]: unknown service 'cart'"]),
                  RuntimeError("a bug"), Result(good))

    async def run():
        assert await cp.reload("start")
        assert not await cp.reload("bad edit")
        assert cp.cache.snapshot is good and cp.state.errors == ["a.yaml:3:5: error[MF201]: unknown service 'cart'"]
        assert valid(cp) == 0
        assert not await cp.reload("crash")
        assert cp.cache.snapshot is good and cp.cache.generation == 1
        assert await cp.reload("fixed")  # the same snapshot as before the errors: valid again, nothing pushed
        assert cp.state.errors == [] and valid(cp) == 1

    asyncio.run(run())
    assert reloads(cp) == {"ok": 1, "invalid": 1, "crash": 1, "unchanged": 1}


def test_reloads_asked_for_while_one_runs_fold_into_one_more_with_every_changed_file():
    cp, compiler = plane(*[Result(FakeSnapshot({"n": object()})) for _ in range(4)])

    async def run():
        cp.request_reload("a", ["specs/a.yaml"])
        await asyncio.sleep(0)  # the first reload has begun (its compile runs in a thread)
        cp.request_reload("b", ["specs/b.yaml"])
        cp.request_reload("c", ["specs/c.yaml"])
        await cp._reloader
        assert compiler.calls == [frozenset({"specs/a.yaml"}), frozenset({"specs/b.yaml", "specs/c.yaml"})]
        cp.request_reload("d", ["specs/d.yaml"])
        cp.request_reload("dir", None)  # a change naming no single file: the next compile looks at everything
        await cp._reloader
        assert compiler.calls[2:] == [None]

    asyncio.run(run())
    assert cp.cache.generation == 3


def test_the_next_expiry_schedules_a_reload_and_a_later_result_replaces_it():
    soon = datetime.now(timezone.utc) + timedelta(milliseconds=50)
    cp, compiler = plane(Result(FakeSnapshot({"n": object()}), next_expiry=soon),
                         Result(FakeSnapshot({"n": object()}), next_expiry=None))

    async def run():
        assert await cp.reload("start")
        assert cp._expiry is not None
        for _ in range(100):
            if len(compiler.calls) == 2 and cp._reloader is not None and cp._reloader.done():
                break
            await asyncio.sleep(0.02)
        assert len(compiler.calls) == 2 and cp.cache.generation == 2  # the expiry's reload ran
        assert cp._expiry is None  # nothing expires any more: no timer left

    asyncio.run(run())


def test_a_small_change_after_a_quick_compile_compiles_on_the_loop(tmp_path):
    small, big = tmp_path / "small.yaml", tmp_path / "big.yaml"
    small.write_text("kind: Sandbox\n")
    big.write_text("#" * 20_000)
    cp, _ = plane()
    assert not cp._inline(frozenset({str(small)}))  # before any compile: the first goes to the thread
    cp._last_compile = 0.001
    assert cp._inline(frozenset({str(small)})) and cp._inline(frozenset({str(tmp_path / "gone.yaml")}))
    assert not cp._inline(frozenset({str(big)})) and not cp._inline(None) and not cp._inline(frozenset())
    assert not cp._inline(frozenset(str(tmp_path / f"{i}.yaml") for i in range(9)))  # too many files
    cp.verify = True
    assert not cp._inline(frozenset({str(small)}))
