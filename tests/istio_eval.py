"""Evaluate Istio VirtualServices the way a sidecar does, for tests.

First VirtualService bound to `mesh` whose hosts include the request host; its http routes in
order; the first route with a matching `match` entry (or none) wins. Header matches: `exact`,
`prefix`, `regex` (RE2, full match); a header sent several times is matched joined with ','.
Hosts as Istio reads them (found by running Istio's translator, tests/test_istio_conformance.py): a
name without a dot is a Service in the object's namespace, any dotted name is taken literally; a
destination subset no DestinationRule of its host defines has no cluster (503), and neither has a host
that is neither a Kubernetes Service (`known`) nor a ServiceEntry's.
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


NO_ROUTE = "<no route: 404>"
NO_CLUSTER = "<no cluster: 503>"


def fqdn(host: str, namespace: str, domain: str = "cluster.local") -> str:
    return host if "." in host or host == "*" else f"{host}.{namespace}.svc.{domain}"


def _namespace(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def route(objects: list[dict], host: str, port: int, headers: dict[str, list[str]],
          known: set[str] | None = None) -> dict:
    """The destination a request reaches, its host fully qualified; {"host": host} when no VirtualService
    applies; {"host": NO_ROUTE} or {"host": NO_CLUSTER} where Istio answers 404 or 503. `known`: the
    Kubernetes Services' names (name.ns.svc.cluster.local); None = every host has a cluster."""
    headers = {k.lower(): v for k, v in headers.items()}
    for obj in objects:
        if obj["kind"] != "VirtualService":
            continue
        spec, ns = obj["spec"], _namespace(obj)
        if "mesh" not in (spec.get("gateways") or ["mesh"]) or host not in {fqdn(h, ns) for h in spec["hosts"]}:
            continue
        for r in spec.get("http") or []:
            matches = r.get("match")
            if not matches or any(match_ok(m, port, headers) for m in matches):
                dest = dict(r["route"][0]["destination"])
                dest["host"] = fqdn(dest["host"], ns)
                return dest if _has_cluster(objects, dest, known) else {"host": NO_CLUSTER}
        return {"host": NO_ROUTE}
    return {"host": host}


def _has_cluster(objects: list[dict], dest: dict, known: set[str] | None) -> bool:
    entries = {fqdn(h, _namespace(o)) for o in objects if o["kind"] == "ServiceEntry" for h in o["spec"]["hosts"]}
    if known is not None and dest["host"] not in known | entries:
        return False
    if "subset" not in dest:
        return True
    return any(fqdn(o["spec"]["host"], _namespace(o)) == dest["host"]
               and dest["subset"] in {s["name"] for s in o["spec"].get("subsets") or []}
               for o in objects if o["kind"] == "DestinationRule")
