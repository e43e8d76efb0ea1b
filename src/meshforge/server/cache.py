"""The snapshot cache: the one current configuration, and the streams waiting for changes.

Input: snapshots (`xdsapi.Snapshot`). Output: wake-ups for every subscribed stream.
Imports no compiler stage: the CLI glues the compiler to `publish`.
"""

from __future__ import annotations

import time

from ..xdsapi import CLUSTER_TYPE, DEFAULT_OUTBOUND_PORT, Snapshot


class SnapshotCache:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.previous: Snapshot | None = None  # the one before (proxies may still log requests made under it)
        self.generation = 0
        self.published_at = 0.0  # monotonic time of the last publish, for push latency
        self._queues: set = set()  # each stream's Mailbox

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` current and wake every stream (each decides what changed for its node)."""
        self.previous, self.snapshot = self.snapshot, snapshot
        self.generation += 1
        self.published_at = time.monotonic()
        for q in list(self._queues):
            q.put_nowait(("snapshot", self.generation))

    def subscribe(self, q) -> None:  # anything with put_nowait (a stream's Mailbox)
        self._queues.add(q)

    def unsubscribe(self, q) -> None:
        self._queues.discard(q)

    def resources(self, node: str, port: int, host: str | None = None, transparent: bool = False,
                  accept: tuple[str, int] | None = None) -> dict:
        if self.snapshot is None:
            return {}
        return self.snapshot.resources(node, port, host, transparent, accept)

    def clusters_of(self, node: str) -> "_Clusters":
        """The clusters a node holds now or held under the previous snapshot (the calls its proxy can log), as
        a container: `name in` it looks both up, O(1)."""
        return _Clusters([snap.resources(node, DEFAULT_OUTBOUND_PORT).get(CLUSTER_TYPE, {})
                          for snap in (self.snapshot, self.previous) if snap is not None])

    def known_node(self, node: str) -> bool:
        return self.snapshot is not None and node in self.snapshot.nodes


class _Clusters:
    def __init__(self, maps: list) -> None:
        self.maps = maps

    def __contains__(self, name: object) -> bool:
        return any(name in m for m in self.maps)
