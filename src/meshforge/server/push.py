"""Make-before-break for one stream: in which order the xDS types go out, and when a removed cluster may go.

Input: a `StreamView` (the stream as the planner sees it): its per-type state (`types`: requested, awaiting an
ACK, what was sent, the snapshot dict it was sent from, `force`), the types the proxy rejected, the current
snapshot's resources for the node (`source`) and `send`, which sends a type when something in it changed
and says whether it did. Output: the sends, in order. The ADS streams (`ads.py`, state of the world and
delta alike) call `push` after every request and every new snapshot; it holds no state of its own, so a
test drives it with a fake target (tests/test_push.py) and the protocol tests check the same order on the wire.

The order, as Envoy needs it (xDS protocol, "eventual consistency considerations"):
1. CDS first, with the clusters the snapshot dropped still in it, and nothing else until it is ACKed: a
   route may not name a cluster the proxy does not have yet. Each CDS change resends EDS (`force`): a
   re-created EDS cluster warms until it gets its endpoints again.
2. EDS, then LDS and RDS, but these two only once every EDS cluster sent has its endpoints: a cluster
   still warming answers 503 to the routes that already name it.
3. CDS again without the dropped clusters, once every listener and route configuration the proxy holds was
   built from the current snapshot and ACKed (a response awaiting its ACK, a rejected one, or one built
   from an older snapshot may still send traffic to them).
"""

from __future__ import annotations

from typing import Protocol

from ..xdsapi import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE


class TypeView(Protocol):
    requested: bool
    awaiting: bool
    sent: dict
    src: object
    force: bool


class StreamView(Protocol):
    types: dict[str, TypeView]
    rejected: dict[str, str]

    def source(self, type_url: str) -> dict: ...

    async def send(self, type_url: str, keep_removed: bool = False, always: bool = False) -> bool: ...


def awaiting(target: StreamView, type_url: str) -> bool:
    st = target.types.get(type_url)
    return st is not None and st.awaiting


def routes_settled(target: StreamView) -> bool:
    """Every listener and route configuration the proxy holds was built from the current snapshot and
    accepted: only then may the clusters that older ones sent traffic to go."""
    for t in (LISTENER_TYPE, ROUTE_TYPE):
        st = target.types.get(t)
        if st is None or not st.requested:
            continue
        if st.awaiting or t in target.rejected or st.src is not target.source(t):
            return False
    return True


def endpoints_sent(target: StreamView) -> bool:
    """Every cluster the proxy was sent that takes its endpoints from EDS has been sent them (until then it
    is warming; Envoy asks for a new cluster's endpoints right after accepting it: the wait is one round trip)."""
    eds, cds = target.types.get(ENDPOINT_TYPE), target.types.get(CLUSTER_TYPE)
    if eds is None or not eds.requested or cds is None:
        return True  # a client that takes no endpoints from EDS has nothing warming
    assignments = target.source(ENDPOINT_TYPE)
    return all(n in eds.sent for n in cds.sent if n in assignments)


def keep_removed(target: StreamView, type_url: str) -> bool:
    """Whether a response of this type must still carry the clusters the snapshot dropped."""
    return type_url == CLUSTER_TYPE and not routes_settled(target)


async def push(target: StreamView) -> None:
    """Send what changed, in the order above. The caller checks there is a snapshot and a node."""
    if awaiting(target, CLUSTER_TYPE):
        return
    cds = target.types.get(CLUSTER_TYPE)
    if cds is not None and cds.requested:
        if await target.send(CLUSTER_TYPE, keep_removed=True):
            eds = target.types.get(ENDPOINT_TYPE)
            if eds is not None:
                eds.force = True
            return  # wait for the CDS ACK before anything that may reference new clusters
    for t in PUSH_ORDER[1:]:  # after CDS
        st = target.types.get(t)
        if st is None or not st.requested:
            continue
        await target.send(t)
        if t == ENDPOINT_TYPE and not endpoints_sent(target):
            break  # listeners and routes wait: the endpoints' subscription comes next, its answer pushes again
    if cds is not None and cds.requested and routes_settled(target):
        await target.send(CLUSTER_TYPE, keep_removed=False)
