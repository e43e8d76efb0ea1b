"""Every xDS resource name, in one place (CONTRACT §3.2)."""

from __future__ import annotations

from ...xdsapi import EDGE_NODE, PASSTHROUGH_CLUSTER  # noqa: F401 - re-exported: the xDS names live here

LISTENER = "meshforge_outbound"
ROUTE_CONFIG = "meshforge_outbound"
EDGE_LISTENER = "meshforge_edge"
EDGE_ROUTE_CONFIG = "meshforge_edge"
TRANSPARENT_ROUTE_CONFIG = "meshforge_transparent"  # a transparent sidecar's routes: unknown hosts pass through
XDS_CLUSTER = "meshforge_xds"  # the bootstrap's cluster for the control plane


def cluster(port: int, fqdn: str, key: str = "") -> str:
    """`outbound|<port>||<fqdn>` for the baseline, `outbound|<port>|<routing key>|<fqdn>` for a sandbox."""
    return f"outbound|{port}|{key}|{fqdn}"


def virtual_host(service_id: str, port: int) -> str:
    return f"{service_id}:{port}"


def node_file(node: str) -> str:
    """`render -o DIR` writes each sidecar's file as DIR/<name>.<namespace>.yaml, and the edge's as edge.yaml."""
    return "edge.yaml" if node == EDGE_NODE else f"{node}.yaml"
