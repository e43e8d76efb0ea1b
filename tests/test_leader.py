"""controller/leader: a Lease taken, renewed, refused while another holds it, taken over once it lapsed, given up on
a clean stop; writes are optimistic (a stale resourceVersion loses). Against a fake API that keeps resourceVersions;
leader failover between real replicas is tests/test_controller.py."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone

import httpx2 as httpx
import pytest

from meshforge.controller import kube
from meshforge.controller.leader import LeaderElector, _micro


class FakeLeases:
    def __init__(self):
        self.lease: dict | None = None
        self.version = 0

    async def get(self, kind, name, namespace):
        assert kind is kube.LEASE
        return copy.deepcopy(self.lease)

    async def create(self, obj):
        if self.lease is not None:
            raise _status(409)
        self.version += 1
        self.lease = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}

    async def replace(self, obj):
        if obj["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise _status(409)  # someone wrote it since it was read
        self.version += 1
        self.lease = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}


def _status(code: int) -> httpx.HTTPStatusError:
    req = httpx.Request("PUT", "https://kube/apis/coordination.k8s.io/v1/leases")
    return httpx.HTTPStatusError("conflict", request=req, response=httpx.Response(code, request=req))


def elector(api: FakeLeases, who: str) -> LeaderElector:
    return LeaderElector(api, "meshforge", "meshforge-controller", who, duration=15, renew=5)


def test_a_lease_is_taken_renewed_and_refused_to_another_while_it_is_fresh():
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")

    async def run():
        assert await a._try()
        first = api.lease["spec"]
        assert (first["holderIdentity"], first["leaseTransitions"], first["leaseDurationSeconds"]) == ("a", 0, 15)
        assert not await b._try()
        assert await a._try()  # renewed: same holder, acquire time kept
        assert api.lease["spec"]["acquireTime"] == first["acquireTime"] and api.lease["spec"]["leaseTransitions"] == 0

    asyncio.run(run())


def test_a_lapsed_lease_is_taken_over_and_a_released_one_at_once():
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")

    async def run():
        assert await a._try()
        api.lease["spec"]["renewTime"] = _micro(datetime.now(timezone.utc) - timedelta(seconds=16))  # a stopped
        assert await b._try()
        assert (api.lease["spec"]["holderIdentity"], api.lease["spec"]["leaseTransitions"]) == ("b", 1)
        b._valid_until = float("inf")  # b leads: a clean stop gives the lease up
        await b.release()
        assert not b.leading and api.lease["spec"]["holderIdentity"] == ""
        assert await a._try() and api.lease["spec"]["leaseTransitions"] == 2

    asyncio.run(run())


def test_of_two_writes_from_one_read_only_the_first_wins():
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")

    async def run():
        await a._try()
        api.lease["spec"]["renewTime"] = _micro(datetime.now(timezone.utc) - timedelta(seconds=60))
        stale = await api.get(kube.LEASE, "meshforge-controller", "meshforge")
        assert await b._try()
        with pytest.raises(httpx.HTTPStatusError) as e:
            await api.replace(stale)  # a's write from its earlier read
        assert kube.conflict(e.value) and api.lease["spec"]["holderIdentity"] == "b"

    asyncio.run(run())


def test_run_leads_while_it_renews_and_says_when_leadership_changes():
    api = FakeLeases()
    a = LeaderElector(api, "meshforge", "meshforge-controller", "a", duration=0.5, renew=0.05)

    async def run():
        task = asyncio.ensure_future(a.run())
        await asyncio.wait_for(a.changed.wait(), 5)
        assert a.leading
        a.changed.clear()

        async def refuse(obj):  # the API server starts refusing every write: the lease runs out
            raise _status(409)
        api.replace = refuse
        await asyncio.wait_for(a.changed.wait(), 5)
        assert not a.leading
        task.cancel()

    asyncio.run(run())
