"""The snapshot cache: the one current configuration, and the streams waiting for changes.

Input: snapshots (`xdsapi.Snapshot`). Output: wake-ups for every subscribed stream.
Imports no compiler stage: the CLI glues the compiler to `publish`.
"""

from __future__ import annotations

import asyncio
import time

from ..xdsapi import Snapshot


class SnapshotCache:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.generation = 0
        self.published_at = 0.0  # monotonic time of the last publish, for push latency
        self._queues: set[asyncio.Queue] = set()

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` current and wake every stream (each decides what changed for its node)."""
        self.snapshot = snapshot
        self.generation += 1
        self.published_at = time.monotonic()
        for q in list(self._queues):
            q.put_nowait(("snapshot", self.generation))

    def subscribe(self, q: asyncio.Queue) -> None:
        self._queues.add(q)

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._queues.discard(q)

    def resources(self, node: str, port: int, host: str | None = None) -> dict:
        if self.snapshot is None:
            return {}
        return self.snapshot.resources(node, port, host)

    def known_node(self, node: str) -> bool:
        return self.snapshot is not None and node in self.snapshot.nodes
