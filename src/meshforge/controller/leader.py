"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

One replica holds the Lease and writes; the others watch and take over once the holder has not renewed
it for `duration` seconds. Taking and renewing are optimistic writes (a PUT carrying the resourceVersion
read): two replicas racing for an expired Lease cannot both win. A leader that fails to renew before its
own lease runs out stops writing (`leading` turns False) before anyone else may start: no double writes,
at the cost of a pause of at most `duration` on failover.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

from . import kube

log = logging.getLogger("meshforge.controller")


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        try:
            return datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return None


class LeaderElector:
    def __init__(self, cluster: kube.Cluster, namespace: str, name: str, identity: str,
                 duration: float = 15.0, renew: float = 5.0):
        self.cluster, self.namespace, self.name, self.identity = cluster, namespace, name, identity
        self.duration, self.renew = duration, renew
        self._valid_until = 0.0  # monotonic: while before it, this replica holds the lease
        self._told = False  # what `changed` last said: a lease that ran out while the loop slept is a change too
        self.changed = asyncio.Event()  # set when leadership is gained or lost

    @property
    def leading(self) -> bool:
        return time.monotonic() < self._valid_until

    async def _try(self) -> bool:
        now = datetime.now(timezone.utc)
        lease = await self.cluster.get(kube.LEASE, self.name, self.namespace)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                "renewTime": _micro(now)}
        if lease is None:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = 0
            await self.cluster.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                       "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec})
            return True
        old = lease.get("spec") or {}
        holder = old.get("holderIdentity")
        renewed = _parse(old.get("renewTime")) or 0.0
        expired = renewed + float(old.get("leaseDurationSeconds") or self.duration) < now.timestamp()
        if holder not in (self.identity, None, "") and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
        else:
            spec["acquireTime"] = old.get("acquireTime") or _micro(now)
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        lease["spec"] = spec
        await self.cluster.replace(lease)
        return True

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                won = await self._try()
            except Exception as e:  # a conflict (another replica won the race) or the API server unreachable
                if not kube.conflict(e):
                    log.warning("leader election: %s", e)
                won = False
            if won:
                # valid for the lease's duration from when we asked, less a margin for clock and latency
                self._valid_until = started + self.duration * 0.8
            if self._told != self.leading:
                self._told = self.leading
                log.info("leader election: %s the lease %s/%s", "holding" if self.leading else "lost",
                         self.namespace, self.name)
                self.changed.set()
            await asyncio.sleep(self.renew if self.leading or won else self.renew / 2)

    async def release(self) -> None:
        """On a clean stop: give the lease up so another replica need not wait for it to expire."""
        if not self.leading:
            return
        self._valid_until = 0.0
        try:
            lease = await self.cluster.get(kube.LEASE, self.name, self.namespace)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.cluster.replace(lease)
        except Exception as e:
            log.debug("releasing the lease: %s", e)
