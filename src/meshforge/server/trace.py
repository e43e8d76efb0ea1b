"""Timestamps of serve's steps, for a benchmark to line up with its own clock (`MESHFORGE_TRACE=FILE`).

Output: one JSON line per step, {"t": seconds, "what": ..., ...}, `t` from time.perf_counter (CLOCK_MONOTONIC on
Linux: the same clock in every process of the machine). Steps: `watch` (the watcher read a batch of events),
`reload` (a reload began), `compiled` (its stages' seconds), `published` (a new snapshot), `sent` (a response
handed to a proxy's transport), `ack` (a proxy accepted one). Off unless the variable is set at start; then
each call costs one check of a module global. A debugging aid: bench_floor.py uses it to say where the time
between a file change and a routing Envoy goes.
"""

from __future__ import annotations

import json
import os
import time

_out = open(os.environ["MESHFORGE_TRACE"], "a", buffering=1) if os.environ.get("MESHFORGE_TRACE") else None


def on() -> bool:
    return _out is not None


def mark(what: str, **fields) -> None:
    if _out is not None:
        _out.write(json.dumps({"t": time.perf_counter(), "what": what, **fields}) + "\n")
