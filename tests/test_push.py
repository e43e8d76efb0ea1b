"""push: the make-before-break order, driven with a fake stream (no gRPC, no snapshot cache, no clock)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from meshforge.server import push
from meshforge.xdsapi import CLUSTER_TYPE as CDS
from meshforge.xdsapi import ENDPOINT_TYPE as EDS
from meshforge.xdsapi import LISTENER_TYPE as LDS
from meshforge.xdsapi import ROUTE_TYPE as RDS


@dataclass
class State:
    requested: bool = True
    awaiting: bool = False
    sent: dict = field(default_factory=dict)
    src: object = None
    force: bool = False


class Fake:
    """A stream as the planner sees it: `resources` is the current snapshot for its node (type -> name ->
    resource); `send` sends a type when its resources differ from what was sent, as the real streams do."""

    def __init__(self, resources: dict[str, dict], types=(CDS, EDS, LDS, RDS)):
        self.resources = resources
        self.types = {t: State() for t in types}
        self.rejected: dict[str, str] = {}
        self.log: list[tuple[str, bool]] = []

    def source(self, t: str) -> dict:
        return self.resources.get(t, {})

    async def send(self, t: str, keep_removed: bool = False, always: bool = False) -> bool:
        st = self.types[t]
        if st.awaiting:
            return False
        want = dict(self.source(t))
        if t == CDS and keep_removed:
            want = {**st.sent, **want}
        st.src = self.source(t)  # what it was last looked at for (the real streams: `unchanged`)
        if want == st.sent and not st.force and not always:
            return False
        st.force = False
        st.sent, st.awaiting = want, True
        self.log.append((t, keep_removed))
        return True

    def ack(self, *types: str) -> None:
        for t in types:
            self.types[t].awaiting = False

    def push(self) -> list[tuple[str, bool]]:
        self.log = []
        asyncio.run(push.push(self))
        return self.log


def snapshot(clusters, routes="r1", listeners="l1"):
    return {CDS: {c: c for c in clusters}, EDS: {c: c for c in clusters}, LDS: {"l": listeners},
            RDS: {"r": routes}}


def test_a_first_push_is_cds_alone_then_eds_lds_rds_once_it_is_acked():
    s = Fake(snapshot(["a", "b"]))
    assert s.push() == [(CDS, True)]
    assert s.push() == []  # CDS awaits its ACK: nothing that might name its clusters goes out
    s.ack(CDS)
    assert s.push() == [(EDS, False), (LDS, False), (RDS, False)]


def test_a_removed_cluster_stays_until_the_routes_built_without_it_are_acked():
    s = Fake(snapshot(["a", "b"]))
    s.push()
    s.ack(CDS)
    s.push()
    s.ack(EDS, LDS, RDS)
    s.resources = snapshot(["a"], routes="r2")  # b goes; the routes change with it
    # CDS with b kept is what the proxy has: not sent again; the endpoints and the new routes go
    assert s.push() == [(EDS, False), (RDS, False)]
    assert "b" in s.types[CDS].sent
    assert s.push() == []  # the routes await their ACK: b stays
    s.ack(EDS, RDS)
    assert s.push() == [(CDS, False)] and "b" not in s.types[CDS].sent
    s.ack(CDS)
    s.resources = snapshot(["a", "c"], routes="r3")  # c comes: CDS (ACKed) before the routes that name it
    assert s.push() == [(CDS, True)]
    assert s.types[EDS].force  # and the endpoints go again after it, whatever changed
    s.ack(CDS)
    assert s.push() == [(EDS, False), (RDS, False)]


def test_a_rejected_route_configuration_keeps_the_clusters_it_may_still_use():
    s = Fake(snapshot(["a", "b"]))
    s.push(), s.ack(CDS), s.push(), s.ack(EDS, LDS, RDS)
    s.resources = snapshot(["a"], routes="r2")
    assert s.push() == [(EDS, False), (RDS, False)]
    s.ack(EDS, RDS)
    s.rejected[RDS] = "bad route"  # ... but the proxy NACKed the new routes: it still routes by the old ones
    assert s.push() == [] and not push.routes_settled(s) and "b" in s.types[CDS].sent
    del s.rejected[RDS]
    assert s.push() == [(CDS, False)]


def test_listeners_and_routes_wait_while_a_cluster_has_no_endpoints_sent():
    s = Fake(snapshot(["a"]))
    s.push(), s.ack(CDS)
    s.types[EDS].awaiting = True  # the endpoints' response is out, not for the new cluster yet
    s.types[EDS].sent = {}
    assert s.push() == []  # EDS cannot go (awaiting), LDS and RDS must not (a would answer 503)
    s.ack(EDS)
    assert s.push() == [(EDS, False), (LDS, False), (RDS, False)]


def test_a_client_without_eds_gets_listeners_and_routes_after_cds():
    s = Fake(snapshot(["a"]), types=(CDS, LDS, RDS))
    assert s.push() == [(CDS, True)]
    s.ack(CDS)
    assert s.push() == [(LDS, False), (RDS, False)]


def test_routes_from_an_older_snapshot_keep_the_removed_clusters_even_when_acked():
    s = Fake(snapshot(["a", "b"]))
    s.push(), s.ack(CDS), s.push(), s.ack(EDS, LDS, RDS)
    s.types[RDS].src = {"r": "stale"}  # what the proxy holds came from another snapshot dict
    assert not push.routes_settled(s) and push.keep_removed(s, CDS) and not push.keep_removed(s, RDS)
    s.types[RDS].src = s.source(RDS)
    assert push.routes_settled(s) and not push.keep_removed(s, CDS)
