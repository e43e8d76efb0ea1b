"""`meshforge bootstrap`: the Envoy bootstrap of one sidecar (or the edge proxy) that gets everything else
from `serve` over ADS.

Input: the service the sidecar belongs to and where `serve` listens. Output: a Bootstrap message.
`node.cluster` names the service (name.namespace); node metadata carries the outbound port.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    backoff_pb2,
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2 as common_tls_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2

from ...model import DEFAULT_NAMESPACE
from ...names import is_ip
from ...xdsapi import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_OUTBOUND_PORT,
    EDGE_NODE,
    LISTEN_ADDRESS_METADATA,
    OUTBOUND_PORT_METADATA,
    TRANSPARENT_METADATA,
    TUNNEL_ACCEPT_METADATA,
    TUNNEL_NODE,
)
from .naming import XDS_CLUSTER
from .resources import _h2_options, ads_source
from .tunnel import TunnelFiles, tunnel_bootstrap_extras


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def node_proto(cluster: str, node_id: str, outbound_port: int, listen: tuple[str, int] | None = None,
               transparent: bool = False, accept: tuple[str, int] | None = None) -> base_pb2.Node:
    """`node.cluster` names the service (or the edge, or the tunnel node); the metadata says which port the
    outbound listener takes (and whether capture rules send it the pod's connections), or (the edge, the
    tunnel node) the address its listener binds, and (the tunnel node) where it takes laptops."""
    meta = struct_pb2.Struct()
    if listen is None:
        meta.update({OUTBOUND_PORT_METADATA: str(outbound_port)})
        if transparent:
            meta.update({TRANSPARENT_METADATA: "true"})
    else:
        meta.update({LISTEN_ADDRESS_METADATA: _host_port(listen)})
    if accept is not None:
        meta.update({TUNNEL_ACCEPT_METADATA: _host_port(accept)})
    return base_pb2.Node(id=node_id, cluster=cluster, metadata=meta)


@dataclass(frozen=True)
class XdsTls:
    """How a sidecar reaches a TLS `serve`: the CA that signed the server's certificate, and for mutual
    TLS its own certificate and key. Files are referenced by path, so rotating them needs no new bootstrap."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


def _tls_socket(tls: XdsTls, xds_host: str) -> base_pb2.TransportSocket:
    """TLS to the control plane: the server must present a certificate for `xds_host` signed by the CA."""
    san = common_tls_pb2.SubjectAltNameMatcher(
        san_type=common_tls_pb2.SubjectAltNameMatcher.IP_ADDRESS if is_ip(xds_host)
        else common_tls_pb2.SubjectAltNameMatcher.DNS,
        matcher=string_pb2.StringMatcher(exact=xds_host))
    ctx = tls_pb2.CommonTlsContext(
        alpn_protocols=["h2"],
        validation_context=common_tls_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(filename=tls.ca_file), match_typed_subject_alt_names=[san]))
    if tls.cert_file:
        ctx.tls_certificates.append(common_tls_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=tls.cert_file),
            private_key=base_pb2.DataSource(filename=tls.key_file)))
    upstream = tls_pb2.UpstreamTlsContext(common_tls_context=ctx, sni="" if is_ip(xds_host) else xds_host)
    any_ = any_pb2.Any()
    any_.Pack(upstream, deterministic=True)
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=any_)


def ads_bootstrap(service: str | None, xds_host: str, xds_port: int, outbound_port: int = DEFAULT_OUTBOUND_PORT,
                  admin_port: int = DEFAULT_ADMIN_PORT, node_id: str | None = None,
                  delta: bool = False, tls: XdsTls | None = None,
                  edge_listen: tuple[str, int] | None = None, transparent: bool = False,
                  tunnel: tuple[tuple[str, int], tuple[str, int], TunnelFiles] | None = None) -> bootstrap_pb2.Bootstrap:
    """A sidecar's bootstrap (`service`), or with `edge_listen` (HOST, PORT) the edge proxy's, or with `tunnel`
    ((data listener), (accept listener), its files) the tunnel node's; `transparent`: behind capture rules."""
    accept = None
    if tunnel is not None:
        cluster, (edge_listen, accept, _) = TUNNEL_NODE, tunnel
    elif edge_listen is not None:
        cluster = EDGE_NODE
    elif service is None:
        raise ValueError("a sidecar bootstrap needs its service")
    else:
        cluster = service if "." in service else f"{service}.{DEFAULT_NAMESPACE}"
    b = bootstrap_pb2.Bootstrap(node=node_proto(cluster, node_id or f"{cluster}~{socket.gethostname()}",
                                                outbound_port, edge_listen, transparent, accept))
    if tunnel is not None:
        tunnel_bootstrap_extras(b, tunnel[2])
    if admin_port:
        b.admin.address.CopyFrom(address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=admin_port)))
    grpc = grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
        cluster_name=XDS_CLUSTER,
        # reconnect quickly when the control plane restarts (default backoff grows to 30 s)
        retry_policy=base_pb2.RetryPolicy(retry_back_off=backoff_pb2.BackoffStrategy(
            base_interval=duration_pb2.Duration(nanos=100_000_000), max_interval=duration_pb2.Duration(seconds=2)))))
    b.dynamic_resources.ads_config.CopyFrom(config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.DELTA_GRPC if delta else config_source_pb2.ApiConfigSource.GRPC,
        transport_api_version=config_source_pb2.V3, grpc_services=[grpc], set_node_on_first_message_only=True))
    b.dynamic_resources.lds_config.CopyFrom(ads_source())
    b.dynamic_resources.cds_config.CopyFrom(ads_source())
    xds = cluster_pb2.Cluster(
        name=XDS_CLUSTER, connect_timeout=duration_pb2.Duration(seconds=1),
        type=cluster_pb2.Cluster.STATIC if is_ip(xds_host) else cluster_pb2.Cluster.STRICT_DNS,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=XDS_CLUSTER, endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=xds_host, port_value=xds_port))))])]))
    for k, v in _h2_options().items():
        xds.typed_extension_protocol_options[k].CopyFrom(v)
    if tls is not None:
        xds.transport_socket.CopyFrom(_tls_socket(tls, xds_host))
    b.static_resources.clusters.append(xds)
    return b
