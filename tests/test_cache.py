"""server/cache: publishing wakes every subscribed stream; a node's clusters are those of the current snapshot and
of the one before (what its proxy may still log calls to)."""

from __future__ import annotations

from dataclasses import dataclass

from meshforge.server.cache import SnapshotCache
from meshforge.xdsapi import CLUSTER_TYPE, ResourceSet


@dataclass
class Snap:
    clusters: dict

    @property
    def nodes(self):
        return dict.fromkeys(self.clusters)

    def resources(self, node, port, host=None, transparent=False, accept=None):
        return {CLUSTER_TYPE: ResourceSet.fromkeys(self.clusters.get(node, ()))}


class Box:
    def __init__(self):
        self.got = []

    def put_nowait(self, item):
        self.got.append(item)


def test_publishing_wakes_every_subscribed_stream_with_the_generation():
    cache, a, b = SnapshotCache(), Box(), Box()
    assert cache.resources("web", 15001) == {} and not cache.known_node("web")
    cache.subscribe(a)
    cache.subscribe(b)
    cache.publish(Snap({"web": ["cart"]}))
    cache.unsubscribe(b)
    cache.publish(Snap({"web": ["cart", "pay"]}))
    assert a.got == [("snapshot", 1), ("snapshot", 2)] and b.got == [("snapshot", 1)]
    assert cache.generation == 2 and cache.known_node("web") and not cache.known_node("pay")
    assert set(cache.resources("web", 15001)[CLUSTER_TYPE]) == {"cart", "pay"}


def test_a_nodes_clusters_are_the_current_ones_and_the_ones_before():
    cache = SnapshotCache()
    cache.publish(Snap({"web": ["cart-v1"]}))
    cache.publish(Snap({"web": ["cart-v2"]}))
    clusters = cache.clusters_of("web")
    assert "cart-v1" in clusters and "cart-v2" in clusters and "pay" not in clusters
    cache.publish(Snap({"web": ["cart-v3"]}))
    assert "cart-v1" not in cache.clusters_of("web")  # two snapshots back: its proxy no longer has it
    assert "cart-v1" not in cache.clusters_of("nobody")
