"""Every xDS resource name, in one place (CONTRACT §3.2)."""

from __future__ import annotations

LISTENER = "meshforge_outbound"
ROUTE_CONFIG = "meshforge_outbound"
XDS_CLUSTER = "meshforge_xds"  # the bootstrap's cluster for the control plane


def cluster(port: int, fqdn: str, key: str = "") -> str:
    """`outbound|<port>||<fqdn>` for the baseline, `outbound|<port>|<routing key>|<fqdn>` for a sandbox."""
    return f"outbound|{port}|{key}|{fqdn}"


def virtual_host(service_id: str, port: int) -> str:
    return f"{service_id}:{port}"


def node_file(service_id: str) -> str:
    """`render -o DIR` writes each node's file as DIR/<name>.<namespace>.yaml."""
    return f"{service_id}.yaml"
