"""The mesh as the dashboard shows it: plain JSON data made from a `Model`.

Input: a lowered model. Output: a dict (services and whom they call, every routing key with its owner
and forks, sandboxes with their expiry, the edge's hosts) that serve's admin API returns as
`/api/state`'s overview and the dashboard page draws; `doctor` reads whom each service calls from it.
Made on demand (a `Result` carries a function that makes it), never on every change.
"""

from __future__ import annotations

from .model import Model, rfc3339


def mesh_overview(model: Model) -> dict:
    """The mesh as plain JSON data (the dashboard's): services and whom they call, every routing key with
    its owner and forks, sandboxes with their expiry, the edge's hosts."""
    def forks(fs, key: str) -> list[dict]:
        return [{"service": f.service, "sandbox": f.sandbox, "destination": model.describe_fork(f, key)} for f in fs]

    edge = model.edge
    return {
        "services": [{"id": s.id, "dependsOn": None if s.depends_on is None else [d.service for d in s.depends_on]}
                     for s in model.services],
        "keys": [{"key": k.key, "ownerKind": k.owner_kind, "owner": k.owner, "forks": forks(k.forks, k.key),
                  "previewHost": edge.preview_host(k.key) if edge and edge.preview_domain else None}
                 for k in model.keys],
        "sandboxes": [{"name": s.name, "key": s.key, "expired": s.expired,
                       "expiresAt": rfc3339(s.expires_at) if s.expires_at else None, "forks": forks(s.forks, s.key)}
                      for s in model.sandboxes],
        "edge": None if edge is None else {"service": edge.service, "hosts": list(edge.hosts),
                                           "previewDomain": edge.preview_domain},
    }
