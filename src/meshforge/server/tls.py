"""TLS for the control plane: server credentials, and who may ask for which node's configuration.

Input: certificate, key and (for mutual TLS) client CA files; a peer's verified certificate identities.
Output: gRPC server credentials, an SSL context for the admin server, and the authorisation rule:
a proxy may ask only for the configuration of the service its certificate names, as a DNS SAN
`name.namespace` or a SPIFFE ID `spiffe://<trust domain>/ns/<namespace>/sa/<name>`; the edge proxy's
certificate names `meshforge-edge` (DNS SAN, or a SPIFFE ID whose service account is meshforge-edge).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..xdsapi import EDGE_NODE
from .ads import StreamError

_SPIFFE = re.compile(r"spiffe://[^/]+/ns/([a-z0-9-]+)/sa/([a-z0-9-]+)")


@dataclass(frozen=True)
class ServerTls:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set: clients must present a certificate it signed

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        return (Path(self.cert_file).read_bytes(), Path(self.key_file).read_bytes(),
                Path(self.client_ca_file).read_bytes() if self.client_ca_file else None)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        cert, key, ca = self.read()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)

    def ssl_context(self) -> ssl.SSLContext:
        """For the admin server: a client certificate is asked for, and needed only for /debug/config."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def may_ask_for(node_cluster: str, names: set[str]) -> bool:
    """True when a certificate with these SANs (DNS names and URIs) belongs to service `node_cluster`."""
    if node_cluster in names:
        return True
    if node_cluster == EDGE_NODE:  # the edge proxy: a SPIFFE identity whose service account is meshforge-edge
        return any((m := _SPIFFE.fullmatch(n)) is not None and m[2] == EDGE_NODE for n in names)
    name, _, namespace = node_cluster.partition(".")
    return any((m := _SPIFFE.fullmatch(n)) is not None and (m[1], m[2]) == (namespace, name) for n in names)


def grpc_peer_names(context) -> set[str]:
    auth = context.auth_context() if context is not None else {}
    return {v.decode("utf-8", "replace") for key in ("peer_dns", "peer_uri", "x509_subject_alternative_name")
            for v in auth.get(key, [])}


def ssl_peer_names(cert: dict | None) -> set[str]:
    return {value for kind, value in (cert or {}).get("subjectAltName", ()) if kind in ("DNS", "URI")}


def authorize(stream, node) -> None:
    """The ADS rule under mutual TLS (see the module docstring); PERMISSION_DENIED otherwise."""
    names = grpc_peer_names(stream.context)
    if not may_ask_for(node.cluster, names):
        raise StreamError(grpc.StatusCode.PERMISSION_DENIED,
                          f"the client certificate ({', '.join(sorted(names)) or 'no DNS or URI SAN'}) does not "
                          f"name service {node.cluster!r}, whose configuration the proxy asked for")
