"""Evaluate Gateway API mesh routes (GAMMA) the way an implementation does, for tests.

A request to Service S on port P: every HTTPRoute/GRPCRoute whose `parentRefs` name S (kind Service,
port P or no port); each rule's matches (no matches = one match-all); among the matching ones the
highest precedence wins: exact path, then longest path prefix, then method, then most header
matches, then most query matches; ties go to the oldest route (all equal here), then the route
name in alphabetical order. Header matches: `Exact` and `RegularExpression` (RE2, full match);
names case-insensitive; a header sent several times is matched joined with ','.
"""

from __future__ import annotations

import re2


def _header_ok(cond: dict, headers: dict[str, list[str]]) -> bool:
    values = headers.get(cond["name"].lower())
    if values is None:
        return False
    v = ",".join(values)
    if cond.get("type", "Exact") == "Exact":
        return v == cond["value"]
    if cond["type"] == "RegularExpression":
        return re2.fullmatch(cond["value"], v) is not None
    raise AssertionError(f"unsupported header match {cond}")


def _precedence(match: dict) -> tuple:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    exact = path.get("type") == "Exact"
    return (exact, len(path.get("value", "/")), "method" in match, len(match.get("headers") or []),
            len(match.get("queryParams") or []))


def route(objects: list[dict], namespace: str, service: str, port: int, headers: dict[str, list[str]],
          path: str = "/") -> dict | None:
    """The backendRef a request reaches (the first of its rule's), or None when no route applies (plain
    Kubernetes routing)."""
    refs = backends(objects, namespace, service, port, headers, path)
    return refs[0] if refs else None


def backends(objects: list[dict], namespace: str, service: str, port: int, headers: dict[str, list[str]],
             path: str = "/") -> list[dict] | None:
    """Every backendRef of the rule a request reaches with a weight above 0 (a weighted split sends it to
    any of them), or None when no route applies."""
    headers = {k.lower(): v for k, v in headers.items()}
    candidates = []
    for obj in objects:
        if obj["kind"] not in ("HTTPRoute", "GRPCRoute"):
            continue
        ns = obj["metadata"]["namespace"]
        for ref in obj["spec"]["parentRefs"]:
            if ref.get("kind") == "Service" and ref.get("group", "") == "" and ref["name"] == service and \
                    ref.get("namespace", ns) == namespace and ref.get("port", port) == port:
                break
        else:
            continue
        for rule in obj["spec"]["rules"]:
            for m in rule.get("matches") or [{}]:
                p = m.get("path") or {"type": "PathPrefix", "value": "/"}
                if p["type"] == "Exact" and path != p["value"] or \
                        p["type"] == "PathPrefix" and not path.startswith(p["value"]):
                    continue
                if all(_header_ok(h, headers) for h in m.get("headers") or []):
                    candidates.append((_precedence(m), obj["metadata"]["name"], rule["backendRefs"], ns))
    if not candidates:
        return None
    best = max(c[0] for c in candidates)
    _, _, refs, ns = min((c for c in candidates if c[0] == best), key=lambda c: c[1])
    return [{"namespace": ns, **r} for r in refs if r.get("weight", 1) > 0]
