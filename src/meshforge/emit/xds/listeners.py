"""Listeners: a sidecar's outbound listener and the edge's, their connection managers built around the HTTP
filters of the registry (`filters.py`).

Input: where the listener binds, the routing settings, the edge, the route configuration (inline, for a static
bootstrap; else RDS over ADS) and the access logs. Output: `Listener` messages.
"""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from ...model import Edge, Routing
from . import naming, resources
from .filters import Chain, http_filters
from .resources import AccessLogs, _any


def _assemble(hcm: hcm_pb2.HttpConnectionManager, chain: Chain, route_config_name: str,
              route_config: route_pb2.RouteConfiguration | None) -> hcm_pb2.HttpConnectionManager:
    if route_config is None:
        hcm.rds.CopyFrom(hcm_pb2.Rds(config_source=resources.ads_source(), route_config_name=route_config_name))
    else:
        hcm.route_config.CopyFrom(route_config)
    filters, patch = http_filters(chain)
    hcm.access_log.extend(patch.access_logs)
    if patch.local_replies:  # (touching local_reply_config would make it present, empty)
        hcm.local_reply_config.mappers.extend(patch.local_replies)
    resources.remove_early(hcm, patch.removed)
    hcm.http_filters.extend(filters)
    return hcm


def listener(host: str, port: int, routing: Routing, edge: Edge | None = None,
             route_config: route_pb2.RouteConfiguration | None = None,
             access_logs: AccessLogs | None = None, name: str = naming.LISTENER,
             route_config_name: str = naming.ROUTE_CONFIG) -> listener_pb2.Listener:
    """A sidecar's outbound listener; RDS over ADS (with access logs to `serve`), or the route configuration
    inline (static bootstrap: no server to log to). `name`, `route_config_name`: another node's listener with the
    sidecar's chain (the tunnel node's)."""
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name, codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    chain = Chain("sidecar", routing, edge, ads=route_config is None, access_logs=access_logs)
    _assemble(hcm, chain, route_config_name, route_config)
    return listener_pb2.Listener(name=name, address=resources.socket_address(host, port),
                                 filter_chains=[listener_components_pb2.FilterChain(filters=[resources.hcm_filter(hcm)])])


def tunnel_listener(host: str, port: int, routing: Routing, edge: Edge | None = None,
                    route_config: route_pb2.RouteConfiguration | None = None,
                    access_logs: AccessLogs | None = None) -> listener_pb2.Listener:
    """The tunnel node's data listener, where every backend sends the keys of forks to laptops: a sidecar's chain
    (the key read from baggage as a sidecar reads it) in front of the tunnel node's routes (`tunnel.py`); it logs
    nothing to serve."""
    return listener(host, port, routing, edge, route_config, None, naming.TUNNEL_LISTENER, naming.TUNNEL_ROUTE_CONFIG)


def transparent_listener(host: str, port: int, routing: Routing, edge: Edge | None, http_ports: frozenset[int],
                         access_logs: AccessLogs | None = None) -> listener_pb2.Listener:
    """A transparent sidecar's outbound listener: the capture rules (`meshforge capture-rules`) redirect every
    outbound TCP connection of the pod here; the original_dst filter restores where it was going. A connection
    to a port some service of the mesh serves HTTP (HTTP/1.1, h2c, gRPC) on is routed by its Host, with the
    same routes and key matching as the HTTP-proxy listener (a host the mesh does not know: to the original
    destination); any other connection (outside hosts, TCP ports) passes through to its original destination
    untouched. Connections that were not redirected (an application using the sidecar as an HTTP proxy) reach
    the HTTP chain through the default port match too, so both modes work at once on this listener."""
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=naming.LISTENER, codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    chain = Chain("sidecar", routing, edge, ads=True, access_logs=access_logs)
    _assemble(hcm, chain, naming.TRANSPARENT_ROUTE_CONFIG, None)
    http = resources.hcm_filter(hcm)
    chains = [listener_components_pb2.FilterChain(
        name=f"http-{p}", filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=p)), filters=[http])
        for p in sorted(http_ports | {port})]  # its own port: applications that use it as an HTTP proxy
    passthrough = tcp_proxy_pb2.TcpProxy(stat_prefix="passthrough", cluster=naming.PASSTHROUGH_CLUSTER)
    return listener_pb2.Listener(
        name=naming.LISTENER, address=resources.socket_address(host, port),
        listener_filters=[listener_components_pb2.ListenerFilter(
            name="envoy.filters.listener.original_dst", typed_config=_any(original_dst_pb2.OriginalDst()))],
        filter_chains=chains,
        default_filter_chain=listener_components_pb2.FilterChain(
            name="passthrough", filters=[listener_components_pb2.Filter(
                name="envoy.filters.network.tcp_proxy", typed_config=_any(passthrough))]))


def _edge_hcm(routing: Routing, edge: Edge, trusted: bool, route_config: route_pb2.RouteConfiguration | None,
              access_logs: AccessLogs | None) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=f"{naming.EDGE_LISTENER}_{'trusted' if trusted else 'untrusted'}",
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        use_remote_address=wrappers_pb2.BoolValue(value=True),  # outside callers: the peer is who they are
        strip_any_host_port=True)
    chain = Chain("edge", routing, edge, trusted, ads=route_config is None, access_logs=access_logs)
    return _assemble(hcm, chain, naming.EDGE_ROUTE_CONFIG, route_config)


def edge_listener(host: str, port: int, routing: Routing, edge: Edge | None,
                  route_config: route_pb2.RouteConfiguration | None = None,
                  access_logs: AccessLogs | None = None) -> listener_pb2.Listener:
    """The edge's listener: callers in `trusted_sources` (matched on the connection's peer address) keep
    their routing key; everyone else's is removed before routing."""
    if edge is None:
        raise ValueError("an edge listener needs the model's edge")
    chains = []
    if edge.trusted_sources:
        ranges = []
        for cidr in edge.trusted_sources:
            prefix, _, length = cidr.partition("/")
            ranges.append(address_pb2.CidrRange(address_prefix=prefix, prefix_len=wrappers_pb2.UInt32Value(value=int(length))))
        chains.append(listener_components_pb2.FilterChain(
            name="trusted", filter_chain_match=listener_components_pb2.FilterChainMatch(source_prefix_ranges=ranges),
            filters=[resources.hcm_filter(_edge_hcm(routing, edge, True, route_config, access_logs))]))
    chains.append(listener_components_pb2.FilterChain(
        name="untrusted", filters=[resources.hcm_filter(_edge_hcm(routing, edge, False, route_config, access_logs))]))
    return listener_pb2.Listener(name=naming.EDGE_LISTENER, address=resources.socket_address(host, port),
                                 filter_chains=chains)
