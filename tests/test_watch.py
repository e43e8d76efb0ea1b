"""The inotify watcher: complete changes reported at once, files being written never; and `serve`
publishing nothing that was read in the middle of a write."""

from __future__ import annotations

import asyncio
import json
import os
import time

from meshforge.server import watch

from .serve_harness import SPEC, Server, wait_until


def run_watcher(root, actions, changed: list | None = None) -> list[tuple[str, float]]:
    """Run `actions(path)` steps (each a callable, then a pause) under a watcher; the changes it reported
    (and in `changed`, the files each batch named, None for a batch that names no single file)."""
    seen: list[tuple[str, float]] = []
    changed = [] if changed is None else changed

    async def main():
        w = watch.Watcher([str(root)], lambda p: p.endswith(".yaml") or not os.path.isfile(p),
                          lambda reason, files: (seen.append((reason, time.monotonic())), changed.append(files)))
        w.start(asyncio.get_running_loop())
        try:
            for step, pause in actions:
                await asyncio.to_thread(step)
                await asyncio.sleep(pause)
        finally:
            w.close()

    asyncio.run(main())
    return seen


def test_a_file_being_written_is_reported_only_once_it_is_closed(tmp_path):
    f = open(tmp_path / "a.yaml", "w")
    marks = {}

    def write_half():
        f.write("kind: Sandbox\n")
        f.flush()

    def close():
        marks["closed"] = time.monotonic()
        f.write("metadata: {name: x}\n")
        f.close()

    seen = run_watcher(tmp_path, [(write_half, 0.3), (close, 0.2)])
    assert seen and all(t >= marks["closed"] for _, t in seen)


def test_renames_deletes_and_new_directories_are_reported(tmp_path):
    (tmp_path / "tmp~").write_text("x: 1\n")
    changed: list = []
    seen = run_watcher(tmp_path, [
        (lambda: os.rename(tmp_path / "tmp~", tmp_path / "b.yaml"), 0.1),
        (lambda: (tmp_path / "sub").mkdir(), 0.1),
        (lambda: (tmp_path / "sub" / "c.yaml").write_text("y: 2\n"), 0.1),
        (lambda: (tmp_path / "b.yaml").unlink(), 0.1),
        (lambda: (tmp_path / "notes.txt").write_text("ignored\n"), 0.1)], changed)
    assert len(seen) == 4
    # each batch names its files, so the reload can read those alone; a new directory names none
    assert changed == [[str(tmp_path / "b.yaml"), str(tmp_path / "tmp~")], None, [str(tmp_path / "sub" / "c.yaml")],
                       [str(tmp_path / "b.yaml")]]


def test_serve_never_publishes_a_file_in_the_middle_of_a_write(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    sandbox = ("apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: pr-1, namespace: shop}\n"
               "spec:\n  forks: [{service: api, to: {endpoints: [{address: 127.0.0.1, port: %d}]}}]\n")
    (d / "sb.yaml").write_text(sandbox % 10)
    with Server([d]) as server:
        def clusters():
            return {c["name"] for c in json.loads(server.get("/debug/config?node=web.shop")[1])["resources"]["Cluster"]}

        wait_until(lambda: "outbound|80|pr-1|api.shop.svc.cluster.local" in clusters(), 10, what="sandbox served")
        wait_until(lambda: server.metric("meshforge_reloads_total", 'result="unchanged"') >= 1, 10, what="watching")
        ok = server.metric("meshforge_reloads_total", 'result="ok"')
        with open(d / "sb.yaml", "w") as f:  # truncated: an empty file is valid and would drop the sandbox
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:  # meanwhile, the half-written file is never published
                assert "outbound|80|pr-1|api.shop.svc.cluster.local" in clusters()
                time.sleep(0.02)
            assert server.metric("meshforge_reloads_total", 'result="ok"') == ok  # nothing published meanwhile
            f.write(sandbox % 11)
        wait_until(lambda: server.metric("meshforge_reloads_total", 'result="ok"') == ok + 1, 10, what="the write")
        assert "outbound|80|pr-1|api.shop.svc.cluster.local" in clusters()
