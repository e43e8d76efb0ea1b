"""What marks an object as meshforge's, and whose it is (CONTRACT §3.5): one place for the labels that
every backend writes, `sandbox show` reads, and a controller prunes by.

- `app.kubernetes.io/managed-by: meshforge` on every object meshforge generates (never on a user's own
  object, as written or merged: a label prune never deletes those);
- `meshforge.dev/sandbox: NAME` or `meshforge.dev/route-group: NAME` on every object that exists for one
  sandbox or route group, and goes with it.
"""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "meshforge"
MANAGED = {MANAGED_BY: MANAGER}
SANDBOX_LABEL = "meshforge.dev/sandbox"
ROUTE_GROUP_LABEL = "meshforge.dev/route-group"


def owner_label(owner_kind: str, owner: str) -> dict[str, str]:
    """The label that ties an object to the sandbox (or route group) it exists for."""
    return {SANDBOX_LABEL if owner_kind == "Sandbox" else ROUTE_GROUP_LABEL: owner}


def is_managed(labels: dict | None) -> bool:
    return isinstance(labels, dict) and labels.get(MANAGED_BY) == MANAGER
