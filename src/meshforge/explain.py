"""Explain: which version of every reachable service a request with a routing key reaches.

Input: `Model`, a starting service, a routing key. Output: hops in breadth-first order (plain data),
and a text rendering. A service whose dependencies are unknown is taken to reach every service,
which is exactly what its proxy is told.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Model, Service, rfc3339


@dataclass(frozen=True)
class Hop:
    service: str  # service id
    depth: int  # 0 for the starting service
    via: str | None  # the service that calls it on the shortest path
    version: str  # "baseline" | "sandbox"
    sandbox: str | None
    destination: str | None  # how the sandbox version is reached

    def to_json(self) -> dict:
        return {"service": self.service, "depth": self.depth, "via": self.via, "version": self.version,
                "sandbox": self.sandbox, "destination": self.destination}


@dataclass(frozen=True)
class Explanation:
    start: str
    key: str
    status: str  # one line on what the key is
    active: bool
    hops: tuple[Hop, ...]

    def to_json(self) -> dict:
        return {"from": self.start, "routingKey": self.key, "active": self.active, "status": self.status,
                "hops": [h.to_json() for h in self.hops]}


def _callees(model: Model, svc: Service) -> list[str]:
    if svc.depends_on is None:
        return [s.id for s in model.services if s.id != svc.id]
    return [d.service for d in svc.depends_on]


def explain(model: Model, start: Service, key: str) -> Explanation:
    kr = model.key_by_name.get(key)
    if kr is not None:
        status = f"routing key {key!r}: {kr.owner_kind.lower()} {kr.owner}, forks " + \
            ", ".join(f.service for f in kr.forks)
    else:
        expired = [s for s in model.sandboxes if s.key == key and s.expired]
        if expired:
            status = (f"routing key {key!r} belongs to sandbox {expired[0].name}, which expired at "
                      f"{rfc3339(expired[0].expires_at)}: every hop reaches the baseline")
        else:
            status = f"routing key {key!r} is not defined by any active sandbox or route group: every hop reaches the baseline"
    hops: list[Hop] = []
    seen = {start.id}
    frontier = [(start.id, None)]
    depth = 0
    while frontier:
        nxt = []
        for sid, via in frontier:
            fork = model.destination_of(sid, key)
            hops.append(Hop(sid, depth, via, "sandbox" if fork else "baseline",
                            fork.sandbox if fork else None, fork.destination.describe() if fork else None))
            for callee in _callees(model, model.service_by_id[sid]):
                if callee not in seen:
                    seen.add(callee)
                    nxt.append((callee, sid))
        frontier = nxt
        depth += 1
    return Explanation(start.id, key, status, kr is not None, tuple(hops))


def render_text(e: Explanation) -> str:
    lines = [e.status, ""]
    width = max(len("  " * h.depth + h.service) for h in e.hops) + 2
    lines.append(f"{'SERVICE'.ljust(width)}VERSION")
    for h in e.hops:
        name = ("  " * h.depth + h.service).ljust(width)
        version = "baseline" if h.version == "baseline" else f"sandbox {h.sandbox} -> {h.destination}"
        lines.append(f"{name}{version}")
    return "\n".join(lines) + "\n"
