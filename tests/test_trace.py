"""server/trace: serve's steps as JSON lines on the monotonic clock, only when MESHFORGE_TRACE names a file."""

from __future__ import annotations

import importlib
import json
import time


def test_steps_are_written_with_the_monotonic_clock_only_when_asked(tmp_path, monkeypatch):
    from meshforge.server import trace

    monkeypatch.delenv("MESHFORGE_TRACE", raising=False)
    off = importlib.reload(trace)
    assert not off.on()
    off.mark("reload", reason="x")  # nothing to write to: nothing happens
    path = tmp_path / "trace.jsonl"
    monkeypatch.setenv("MESHFORGE_TRACE", str(path))
    on = importlib.reload(trace)
    try:
        before = time.perf_counter()
        on.mark("sent", node="web.shop", type="CDS")
        on.mark("ack", node="web.shop", type="CDS")
        after = time.perf_counter()
        lines = [json.loads(x) for x in path.read_text().splitlines()]  # line-buffered: there already
        assert [(x["what"], x["type"]) for x in lines] == [("sent", "CDS"), ("ack", "CDS")]
        assert before <= lines[0]["t"] <= lines[1]["t"] <= after
    finally:
        if trace._out is not None:
            trace._out.close()
        monkeypatch.delenv("MESHFORGE_TRACE")
        importlib.reload(trace)
