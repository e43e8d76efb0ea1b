"""A Sandbox's (or RouteGroup's, or Baseline's) status: conditions as `kubectl wait` reads them.

Input: what the controller found for one object (its diagnostics, expiry, readiness, whether its routes
are live). Output: the status object to apply (`observedGeneration`, `conditions`, `routingKey`,
`previewURL`), with each condition's `lastTransitionTime` kept while its status stays the same, and the
transitions worth an Event.

Conditions of a Sandbox:
- `Expired`: True once `expiresAt` has passed (its children are removed).
- `WorkloadsReady`: True when every fork has a ready endpoint; False with the missing Service named
  (reason `WaitingForEndpoints`, then `NotReadyInTime` past the controller's --ready-timeout).
- `RoutesProgrammed`: True when the key's routes are live (applied, or pushed over xDS).
- `Ready`: all of it: not expired, workloads ready, routes programmed. `Invalid` when the spec failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass
class Observed:
    generation: int
    conditions: list[Condition] = field(default_factory=list)
    routing_key: str | None = None
    preview_url: str | None = None


def _status(b: bool) -> str:
    return "True" if b else "False"


def build(observed: Observed, previous: dict | None, now: str) -> tuple[dict, list[Condition]]:
    """The status to write, and the conditions that changed status (for Events)."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, dict)}
    conditions, changed = [], []
    for c in observed.conditions:
        old = before.get(c.type)
        same = old is not None and old.get("status") == _status(c.status)
        conditions.append({"type": c.type, "status": _status(c.status), "reason": c.reason,
                           "message": c.message[:32768],
                           "lastTransitionTime": old.get("lastTransitionTime", now) if same else now,
                           "observedGeneration": observed.generation})
        if not same:
            changed.append(c)
    out: dict = {"observedGeneration": observed.generation, "conditions": conditions}
    if observed.routing_key is not None:
        out["routingKey"] = observed.routing_key
    if observed.preview_url is not None:
        out["previewURL"] = observed.preview_url
    return out, changed


def same(a: dict | None, b: dict) -> bool:
    """Whether a status already says what `b` says (nothing to write)."""
    return (a or {}) == b


def sandbox(generation: int, *, invalid: list[str], expired: bool, ready: bool | None, why: str, live: bool,
            timed_out: bool, key: str | None, preview_url: str | None, failed: str = "") -> Observed:
    """`ready`: every fork has endpoints (None: not known, the spec is invalid)."""
    if invalid:
        message = "; ".join(invalid)
        conds = [Condition("Ready", False, "Invalid", message), Condition("WorkloadsReady", False, "Invalid", message),
                 Condition("RoutesProgrammed", False, "Invalid", message), Condition("Expired", False, "Invalid")]
        return Observed(generation, conds, key, preview_url)
    if expired:
        conds = [Condition("Ready", False, "Expired", "expiresAt has passed: the sandbox's objects are removed"),
                 Condition("WorkloadsReady", False, "Expired"), Condition("RoutesProgrammed", False, "Expired"),
                 Condition("Expired", True, "Expired", "expiresAt has passed")]
        return Observed(generation, conds, key, None)
    workloads = Condition("WorkloadsReady", True, "EndpointsReady", "every fork has a ready endpoint") if ready else \
        Condition("WorkloadsReady", False, "NotReadyInTime" if timed_out else "WaitingForEndpoints", why)
    if live:
        routes = Condition("RoutesProgrammed", True, "Programmed", "requests with the routing key reach the forks")
    elif failed:
        routes = Condition("RoutesProgrammed", False, "ApplyFailed", failed)
    else:
        routes = Condition("RoutesProgrammed", False, "WaitingForWorkloads", "routes go live once every fork has a "
                           "ready endpoint; until then the key reaches the baseline")
    all_ready = bool(ready) and live
    top = Condition("Ready", True, "Ready", "the sandbox is live") if all_ready else \
        Condition("Ready", False, workloads.reason if not ready else ("ApplyFailed" if failed else "RoutesPending"),
                  why if not ready else routes.message)
    return Observed(generation, [top, workloads, routes, Condition("Expired", False, "NotExpired")], key, preview_url)


def simple(generation: int, invalid: list[str], key: str | None = None) -> Observed:
    """Baselines and route groups: valid (Ready) or not."""
    if invalid:
        return Observed(generation, [Condition("Ready", False, "Invalid", "; ".join(invalid))], key)
    return Observed(generation, [Condition("Ready", True, "Accepted", "compiled")], key)
