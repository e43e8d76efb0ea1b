"""Every xDS resource name, in one place (CONTRACT §3.2)."""

from __future__ import annotations

from ...xdsapi import EDGE_NODE, PASSTHROUGH_CLUSTER, TUNNEL_NODE  # noqa: F401 - re-exported: the xDS names live here

LISTENER = "meshforge_outbound"
ROUTE_CONFIG = "meshforge_outbound"
EDGE_LISTENER = "meshforge_edge"
EDGE_ROUTE_CONFIG = "meshforge_edge"
TRANSPARENT_ROUTE_CONFIG = "meshforge_transparent"  # a transparent sidecar's routes: unknown hosts pass through
XDS_CLUSTER = "meshforge_xds"  # the bootstrap's cluster for the control plane
TUNNEL_LISTENER = "meshforge_tunnel"  # the tunnel node's data listener (sidecars send forks to laptops here)
TUNNEL_ROUTE_CONFIG = "meshforge_tunnel"
TUNNEL_ACCEPT = "meshforge_tunnel_accept"  # the tunnel node's listener laptops dial into (TLS)
TUNNEL_INTERNAL = "meshforge_tunnel_internal"  # its internal listener (and the cluster to it): the hop to a laptop
TUNNEL_REVERSE = "meshforge_tunnel_reverse"  # its cluster of reverse tunnels
TUNNEL_CERT_SECRET = "meshforge_tunnel_cert"  # static secrets of the tunnel node's bootstrap
TUNNEL_CA_SECRET = "meshforge_tunnel_client_ca"
TUNNEL_UPSTREAM = "meshforge_tunnel"  # the laptop's cluster: the tunnel node's accept listener


def cluster(port: int, fqdn: str, key: str = "") -> str:
    """`outbound|<port>||<fqdn>` for the baseline, `outbound|<port>|<routing key>|<fqdn>` for a sandbox."""
    return f"outbound|{port}|{key}|{fqdn}"


def laptop_cluster(port: int, fqdn: str, key: str) -> str:
    """The tunnel node's cluster for one key's fork of a service port to a laptop: the laptop, else the baseline."""
    return f"laptop|{port}|{key}|{fqdn}"


def virtual_host(service_id: str, port: int) -> str:
    return f"{service_id}:{port}"


def node_file(node: str) -> str:
    """`render -o DIR` writes each sidecar's file as DIR/<name>.<namespace>.yaml, and the edge's as edge.yaml."""
    return "edge.yaml" if node == EDGE_NODE else "tunnel.yaml" if node == TUNNEL_NODE else f"{node}.yaml"
