"""Explain: which version of every reachable service a request with a routing key reaches.

Input: `Model`, a starting service, a routing key. Output: hops in breadth-first order (plain data),
and a text rendering. Only known edges are walked (declared, or inferred from the manifests): a service
whose dependencies are unknown is shown as such, never as calling everything (its proxy is told about
every service, but that is not who it calls).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from .diagnostics import did_you_mean
from .model import Edge, Model, Service, rfc3339


@dataclass(frozen=True)
class Hop:
    service: str  # service id
    depth: int  # 0 for the starting service
    via: str | None  # the service that calls it on the shortest path
    version: str  # "baseline" | "sandbox"
    sandbox: str | None
    destination: str | None  # how the sandbox version is reached
    dependencies_known: bool = True
    baseline_ports: tuple[str, ...] = ()  # a forked service's ports that stay on the baseline (not HTTP)
    again: bool = False  # reached before from another caller: shown, its calls not walked again

    def to_json(self) -> dict:
        return {"service": self.service, "depth": self.depth, "via": self.via, "version": self.version,
                "sandbox": self.sandbox, "destination": self.destination,
                "dependenciesKnown": self.dependencies_known, "baselinePorts": list(self.baseline_ports),
                "again": self.again}


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


def _callees(svc: Service) -> list[str]:
    return [d.service for d in svc.depends_on or ()]


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
            known = sorted(model.key_by_name)
            hint = did_you_mean(key, known)
            if hint:
                status += f"; {hint}"
            if known:
                status += f"\nknown keys: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''}"
    hops: list[Hop] = []
    seen = {start.id}
    frontier = [(start.id, None, False)]
    depth = 0

    def hop(sid: str, via: str | None, again: bool) -> Hop:
        fork = model.destination_of(sid, key)
        svc = model.service_by_id[sid]
        stays = tuple(f"{p.number}/{p.protocol}" for p in svc.ports if not p.routable) if fork else ()
        return Hop(sid, depth, via, "sandbox" if fork else "baseline", fork.sandbox if fork else None,
                   model.describe_fork(fork, key) if fork else None, svc.depends_on is not None, stays, again)

    while frontier:
        nxt = []
        for sid, via, again in frontier:
            hops.append(hop(sid, via, again))
            if again:
                continue
            for callee in _callees(model.service_by_id[sid]):
                if callee not in seen:
                    seen.add(callee)
                    nxt.append((callee, sid, False))
                elif model.destination_of(callee, key) is not None:
                    nxt.append((callee, sid, True))  # every caller of a forked service is shown reaching it
        frontier = nxt
        depth += 1
    return Explanation(start.id, key, status, kr is not None, tuple(hops))


def _serves(edge: Edge, host: str) -> bool:
    return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in edge.hosts)


def _trusted(edge: Edge, source: str | None) -> bool:
    if source is None:
        return False
    addr = ipaddress.ip_address(source)
    return any(addr in ipaddress.ip_network(n) for n in edge.trusted_sources)


def explain_url(model: Model, url: str, key: str | None = None, source: str | None = None) -> Explanation:
    """The path of a request from outside to `url`, entering through the edge: a preview host's key, or
    for a public host the caller's `key`, kept only when `source` is a trusted source.

    ValueError when the model has no edge, the URL names no host the edge serves, or `source` is not an
    IP address."""
    edge = model.edge
    if edge is None:
        raise ValueError("no edge is declared (a Baseline's spec.edge): outside traffic has no way in to explain")
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = (parts.hostname or "").rstrip(".")
    if source is not None:
        ipaddress.ip_address(source)  # ValueError for a non-address
    start = model.service_by_id[edge.service]
    preview = edge.key_of_host(host)
    if preview is not None:
        if key is not None and key != preview:
            note = f"; the routing key {key!r} the caller sent is replaced"
        else:
            note = ""
        inner = explain(model, start, preview)
        if edge.preview_auth is not None:
            note += ("; previewAuth is signed: without a valid link for this key (meshforge preview link) the edge "
                     "answers 401")
        if not inner.active:
            why = inner.status.replace(": every hop reaches the baseline", "")
            return Explanation(start.id, preview, f"{host}: preview host of routing key {preview!r}; the edge answers "
                               f"404 Not Found\n{why}", False, ())
        return replace(inner, status=f"{host}: preview host of routing key {preview!r}; the edge sets it (header and "
                       f"baggage member){note}\n{inner.status}")
    if not _serves(edge, host):
        served = list(edge.hosts) + ([f"<routing key>.{edge.preview_domain}"] if edge.preview_domain else [])
        raise ValueError(f"the edge does not serve host {host!r}; it serves {', '.join(served)}")
    if key is None:
        inner = explain(model, start, "")
        return replace(inner, key="", active=False,
                       status=f"{host}: public host; the request carries no routing key: every hop reaches the baseline")
    if not _trusted(edge, source):
        who = f"source {source}" if source else "a caller outside trustedSources (give --source-address to check one)"
        inner = explain(model, start, "")
        return replace(inner, key=key, active=False,
                       status=f"{host}: public host; from {who} the edge removes the routing key {key!r} "
                       "(header and baggage member): every hop reaches the baseline")
    inner = explain(model, start, key)
    return replace(inner, status=f"{host}: public host; source {source} is trusted, so its routing key is kept\n"
                   f"{inner.status}")


def _tree_order(hops: tuple[Hop, ...]) -> list[Hop]:
    """Each hop right under the service that calls it (hops come breadth-first); a service reached again
    from another caller is shown there too, without its calls."""
    children: dict[str | None, list[Hop]] = {}
    for h in hops:
        children.setdefault(h.via, []).append(h)
    out: list[Hop] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        h = stack.pop()
        out.append(h)
        if not h.again:
            stack.extend(reversed(children.get(h.service, [])))
    return out


def render_text(e: Explanation) -> str:
    lines = [e.status, ""]
    if not e.hops:
        return "\n".join(lines)
    width = max(len("  " * h.depth + h.service) for h in e.hops) + 2
    lines.append(f"{'SERVICE'.ljust(width)}VERSION")
    for h in _tree_order(e.hops):
        name = ("  " * h.depth + h.service).ljust(width)
        version = "baseline" if h.version == "baseline" else f"sandbox {h.sandbox} -> {h.destination}"
        notes = []
        if h.baseline_ports:
            notes.append(f"ports {', '.join(h.baseline_ports)} stay on the baseline")
        if h.again:
            notes.append("also reached above")
        elif not h.dependencies_known:
            notes.append("dependencies unknown")
        lines.append(f"{name}{version}" + "".join(f"  ({n})" for n in notes))
    unknown = list(dict.fromkeys(h.service for h in e.hops if not h.dependencies_known and not h.again))
    if unknown:
        lines += ["", f"dependencies unknown for {', '.join(unknown)}: whom they call is not shown. Declare it with the "
                  "meshforge.dev/depends-on annotation (an empty value for a service that calls none) or dependsOn "
                  "in a Baseline."]
    return "\n".join(lines) + "\n"
