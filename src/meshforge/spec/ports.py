"""A port's protocol, by Istio's rule, for both spec kinds (Baseline entries and Kubernetes Services).

Input: a port's name and appProtocol. Output: Istio's protocol name (HTTP, HTTP2, GRPC, TCP, ..., UNKNOWN).
"""

from __future__ import annotations

KNOWN = ("grpc-web", "http2", "https", "http", "grpc", "tcp", "tls", "mongo", "mysql", "redis", "udp")


def port_protocol(name: str | None, app_protocol: str | None) -> str:
    """appProtocol, else the port name's prefix (`grpc`, `grpc-api`, `http2-x`, ...)."""
    if app_protocol:
        ap = app_protocol.lower()
        ap = ap.split("/")[-1]  # kubernetes.io/h2c and friends
        if ap == "h2c":
            return "HTTP2"
        return ap.upper() if ap in KNOWN else "UNKNOWN"
    if name:
        n = name.lower()
        for proto in KNOWN:
            if n == proto or n.startswith(proto + "-"):
                return proto.upper()
    return "UNKNOWN"
