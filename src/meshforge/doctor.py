"""Doctor: where recent requests with a routing key really went, and the hop that lost the key.

Input: the requests `serve` recorded from the proxies' access logs for one key, and the other requests of
their traces (`/api/requests?key=K`; plain dicts: node, service, version, key, traceId, time, status).
Output: `Diagnosis` = the requests grouped by trace, hop by hop (caller → service, version reached), and the
losses found. A service *loses* the key when it received the key (a caller's proxy sent it the request
with the key) and its own calls in the same trace carried none: it passes the trace context on but not
baggage. Requests without trace context cannot be tied together (and proxies log only requests that
carry a key or a trace context); then a per-service heuristic applies: the service received the key, it
calls others (seen in the logs, or its declared dependencies), and none of its calls carried the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .names import printable


@dataclass(frozen=True)
class Loss:
    service: str  # the service that received the key and did not pass it on
    callees: tuple[str, ...]  # whom its key-less calls went to
    traces: int  # in how many traces (0: found by the heuristic, without trace context)
    heuristic: bool

    def message(self, key: str) -> str:
        callees = ", ".join(self.callees)
        if self.heuristic:
            return (f"key probably lost at {self.service}: it received {key!r}, it calls {callees}, and none of its "
                    f"calls carried the key (a heuristic: no trace context ties calls together, so a call it did "
                    f"not make looks the same; {self.service} passes on neither traceparent nor baggage)")
        return (f"key lost at {self.service}: it received {key!r}, its calls to {callees} in the same trace "
                f"carried none ({self.traces} trace{'s' if self.traces != 1 else ''}); {self.service} passes "
                "traceparent on but not baggage: add the baggage propagator to its OpenTelemetry setup "
                "(or forward the baggage header)")

    def to_json(self, key: str) -> dict:
        return {"service": self.service, "callees": list(self.callees), "traces": self.traces,
                "heuristic": self.heuristic, "message": self.message(key)}


NOTHING_TO_JUDGE = 3  # the exit code when no request carried the key: no verdict either way


@dataclass
class Diagnosis:
    key: str
    traces: list[dict] = field(default_factory=list)  # {"traceId", "hops": [{from, to, version, key, status}]}
    untraced: list[dict] = field(default_factory=list)  # hops of requests without trace context
    losses: list[Loss] = field(default_factory=list)
    why_nothing: str = ""  # when no request carried the key: what doctor knows of why

    @property
    def requests(self) -> int:
        return sum(len(t["hops"]) for t in self.traces) + len(self.untraced)

    @property
    def unauthenticated(self) -> int:
        """Hops whose log came from a stream without a client certificate: anyone could have sent them."""
        return sum(not h.get("authenticated") for t in self.traces for h in t["hops"]) + \
            sum(not h.get("authenticated") for h in self.untraced)

    @property
    def exit_code(self) -> int:
        if self.losses:
            return 1
        return 0 if self.requests else NOTHING_TO_JUDGE

    def to_json(self) -> dict:
        return {"routingKey": self.key, "requests": self.requests, "traces": self.traces, "untraced": self.untraced,
                "losses": [loss.to_json(self.key) for loss in self.losses], "ok": not self.losses,
                "judged": bool(self.requests), "unauthenticatedHops": self.unauthenticated,
                **({"whyNothing": self.why_nothing} if not self.requests else {})}


def _hop(r: dict) -> dict:
    return {"from": r.get("node"), "to": r.get("service") or r.get("authority"), "version": r.get("version"),
            "key": r.get("key"), "status": r.get("status"), "time": r.get("time"),
            "authenticated": bool(r.get("authenticated"))}


def diagnose(key: str, requests: list[dict], calls: dict[str, list[str]] | None = None) -> Diagnosis:
    """`calls`: service id -> the services it depends on (the dashboard's service graph), for the heuristic."""
    report = Diagnosis(key)
    traced: dict[str, list[dict]] = {}
    loose: list[dict] = []
    for r in sorted(requests, key=lambda r: (r.get("time") or 0, r.get("requestId") or "")):
        (traced.setdefault(r["traceId"], []) if r.get("traceId") else loose).append(r)
    lost: dict[str, tuple[set[str], set[str]]] = {}  # service -> (callees, trace ids)
    for tid, rs in traced.items():
        if not any(r.get("key") == key for r in rs):
            continue
        report.traces.append({"traceId": tid, "hops": [_hop(r) for r in rs]})
        received = {r["service"] for r in rs if r.get("key") == key and r.get("service")}
        for r in rs:
            if r.get("node") in received and r.get("key") != key:
                callees, tids = lost.setdefault(r["node"], (set(), set()))
                callees.add(r.get("service") or r.get("authority") or "?")
                tids.add(tid)
    report.losses = [Loss(s, tuple(sorted(c)), len(t), False) for s, (c, t) in sorted(lost.items())]
    # without trace context: the services the key reached, and what they sent afterwards
    keyed = [r for r in loose if r.get("key") == key]
    report.untraced = [_hop(r) for r in loose]
    first: dict[str, float] = {}
    for r in keyed:
        if r.get("service"):
            first.setdefault(r["service"], r.get("time") or 0)
    kept = {r.get("node") for r in keyed}
    for svc, since in sorted(first.items()):
        if svc in lost or svc in kept:
            continue
        after = {r.get("service") or "?" for r in loose
                 if r.get("node") == svc and (r.get("time") or 0) >= since and r.get("key") != key}
        callees = after or set((calls or {}).get(svc) or ())
        if callees:  # it calls others (seen, or declared), and none of its calls carried the key
            report.losses.append(Loss(svc, tuple(sorted(callees)), 0, True))
    return report


def render_text(report: Diagnosis) -> str:
    """The report for a terminal: everything that came from the proxies' logs is shown escaped."""
    key = report.key
    if not report.requests:
        return (f"nothing to judge: no recent request carried routing key {key!r}"
                f"{'; ' + report.why_nothing if report.why_nothing else ''}\n")
    lines = [f"routing key {key!r}: {report.requests} recent requests, {len(report.traces)} traces", ""]
    # hops are marked one by one only when some are authenticated; when none is, one line below says so
    mixed = 0 < report.unauthenticated < report.requests
    for t in report.traces[-10:]:
        chain = []
        for h in t["hops"]:
            carried = "key" if h["key"] == key else "no key"
            mark = ", unauthenticated" if mixed and not h.get("authenticated") else ""
            chain.append(f"{h['from']} -> {h['to']} [{h['version']}, {carried}, {h['status']}{mark}]")
        lines.append(printable(f"trace {t['traceId'][:16]}: " + "; ".join(chain)))
    if report.untraced:
        lines.append(f"{len(report.untraced)} requests without trace context")
    lines.append("")
    if report.losses:
        lines += [printable(loss.message(key)) for loss in report.losses]
    else:
        lines.append(f"no loss: every service that received {key!r} passed it on")
    if report.unauthenticated:
        which = "all" if not mixed else f"{report.unauthenticated} of"
        lines += ["", f"{which} {report.requests} hops were logged by proxies without a client "
                  "certificate: anyone who can reach serve's xDS port could have sent them (serve --client-ca-file "
                  "makes every proxy prove which service it is)"]
    return "\n".join(lines) + "\n"


def why_nothing(key: str, state: dict) -> str:
    """What serve's state (`/api/state`) tells of why no recent request carried `key`."""
    logs = state.get("accessLogs") or {}
    keys = {k.get("key") for k in (state.get("overview") or {}).get("keys") or []}
    if logs.get("enabled") is False:
        return "serve runs with --no-access-logs, so the proxies log nothing to judge by"
    if key not in keys:
        return (f"no active sandbox or route group has the key, so requests with it reach the baseline and "
                f"were not told apart (active keys: {', '.join(sorted(keys)[:10]) or 'none'})")
    rate = logs.get("ratePerSecond")
    budget = f"; each proxy logs at most {rate} keyed or traced requests a second" if rate else ""
    return (f"send traffic with the key (the header, the baggage member or its preview URL), then run doctor again "
            f"(serve keeps the last {logs.get('capacity', 'few thousand')} requests{budget})")
