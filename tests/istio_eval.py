"""Evaluate Istio VirtualServices the way a sidecar does, for tests.

First VirtualService bound to `mesh` whose hosts include the request host; its http routes in
order; the first route with a matching `match` entry (or none) wins. Header matches: `exact`,
`prefix`, `regex` (RE2, full match); a header sent several times is matched joined with ','.
"""

from __future__ import annotations

import re2


def header_ok(cond: dict, values: list[str] | None) -> bool:
    if values is None:
        return False
    v = ",".join(values)
    if "exact" in cond:
        return v == cond["exact"]
    if "prefix" in cond:
        return v.startswith(cond["prefix"])
    if "regex" in cond:
        return re2.fullmatch(cond["regex"], v) is not None
    raise AssertionError(f"unsupported header condition {cond}")


def match_ok(m: dict, port: int, headers: dict[str, list[str]]) -> bool:
    if "port" in m and m["port"] != port:
        return False
    return all(header_ok(c, headers.get(h.lower())) for h, c in (m.get("headers") or {}).items())


def route(objects: list[dict], host: str, port: int, headers: dict[str, list[str]]) -> dict:
    """The destination a request reaches; {"host": host} when no VirtualService applies."""
    headers = {k.lower(): v for k, v in headers.items()}
    for obj in objects:
        if obj["kind"] != "VirtualService":
            continue
        spec = obj["spec"]
        if "mesh" not in (spec.get("gateways") or ["mesh"]) or host not in spec["hosts"]:
            continue
        for r in spec.get("http") or []:
            matches = r.get("match")
            if not matches or any(match_ok(m, port, headers) for m in matches):
                return r["route"][0]["destination"]
        return {"host": "<no route: 404>"}
    return {"host": host}
