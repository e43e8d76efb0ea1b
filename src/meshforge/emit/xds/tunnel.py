"""The tunnel node and the laptop (CONTRACT §5.4): Envoy's reverse tunnels, configured for forks to laptops.

Input: the forks to laptops (`Model.local_forks`, made by lowering), the services they fork, the routing settings.
Output: the tunnel node's listeners, routes and clusters (served by `serve` like any node's), and the laptop's static
bootstrap (`meshforge connect`).

How a keyed request reaches a laptop. Every backend sends a fork to a laptop to the tunnel node's data listener, as it
sends a fork to any Service (lowering made it a host fork). There, the same routing-key matcher a sidecar has picks the
key's route, which names the laptop (`x-meshforge-tunnel-node`, set here so nobody else can) and goes to an aggregate
cluster: first an internal listener that sends it over the laptop's reverse tunnel, then the service's baseline.
While no laptop holds the tunnel, the internal listener's answer is a local reply marked `x-meshforge-tunnel:
unavailable`, and the route retries it once on the aggregate's next priority: the baseline. So a laptop that goes away
costs no failed request and needs no push; one that comes back is used from its next request.

Who may attach. The accept listener has one TLS filter chain per fork to a laptop, chosen by the server name the laptop
sends (its node id, `model.tunnel_node`): the client certificate must be signed by the tunnel's client CA and, when the
fork names an `owner`, carry that subject alternative name; the reverse-tunnel handshake must then claim that very node
id. Another developer's certificate cannot take a key over, and a laptop cannot attach as a node it was not given.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, extension_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.bootstrap.internal_listener.v3 import internal_listener_pb2
from envoy.extensions.bootstrap.reverse_tunnel.downstream_socket_interface.v3 import (
    downstream_reverse_connection_socket_interface_pb2 as downstream_rt_pb2,
)
from envoy.extensions.bootstrap.reverse_tunnel.upstream_socket_interface.v3 import (
    upstream_reverse_connection_socket_interface_pb2 as upstream_rt_pb2,
)
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.clusters.reverse_connection.v3 import reverse_connection_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.reverse_tunnel.v3 import reverse_tunnel_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2 as common_tls_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from ...model import Endpoint, Fork, LocalFork, Port, Routing, Service
from ...names import is_ip
from . import naming, resources
from .resources import _any

NODE_HEADER = "x-meshforge-tunnel-node"  # which laptop: set by the tunnel node's route, read by the reverse cluster
DOWN_HEADER = "x-meshforge-tunnel"  # "unavailable" on the internal listener's own answer: no laptop holds the tunnel
DOWN_VALUE = "unavailable"
TENANT = "meshforge"  # the tenant part of a laptop's reverse-tunnel identity
PING_INTERVAL_SECONDS = 2  # the tunnel node pings each tunnel ...
PING_FAILURES = 3  # ... and drops it after this many unanswered pings: a silently lost laptop costs at most 6 s
# the internal listener's own answers (local replies: never a laptop's response) of 5xx: its upstream failed
# before answering, whatever Envoy's response flag says (the laptop is not there, went away mid-request, its tunnel
# broke or drained while a request was on it). Each is retried on the baseline.
_RUNTIME_MIN_STATUS = "meshforge.tunnel.local_reply_min_status"


def _tls_any(msg) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=_any(msg))


# -- the tunnel node: routes and clusters ----------------------------------------------------------------------

def _retry_to_baseline() -> route_components_pb2.RetryPolicy:
    """One retry, on the aggregate cluster's next priority (the fork's `otherwise`, or the baseline), at once (the
    default back-off would add up to 25 ms): on the internal listener's "no laptop" answer, or when the hop to it
    was reset before an answer (the laptop went away under a request). A laptop's own 5xx is its answer."""
    return route_components_pb2.RetryPolicy(
        retry_on="retriable-headers,reset,connect-failure", num_retries=wrappers_pb2.UInt32Value(value=1),
        retriable_headers=[route_components_pb2.HeaderMatcher(
            name=DOWN_HEADER, string_match=string_pb2.StringMatcher(exact=DOWN_VALUE))],
        retry_priority=route_components_pb2.RetryPolicy.RetryPriority(
            name="envoy.retry_priorities.previous_priorities",
            typed_config=_any(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1))),
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=duration_pb2.Duration(nanos=1_000_000), max_interval=duration_pb2.Duration(nanos=1_000_000)))


def _laptop_route(fork: LocalFork, port: Port, svc: Service) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        name=fork.key, match=route_components_pb2.RouteMatch(prefix="/"),
        request_headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=NODE_HEADER, value=fork.node),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)],
        route=route_components_pb2.RouteAction(cluster=naming.laptop_cluster(port.number, svc.fqdn, fork.key),
                                               timeout=duration_pb2.Duration(), retry_policy=_retry_to_baseline()))


def _virtual_host(svc: Service, port: Port, forks: list[LocalFork], routing: Routing, bare_names: bool,
                  default_port: bool) -> route_components_pb2.VirtualHost:
    vh = route_components_pb2.VirtualHost(name=naming.virtual_host(svc.id, port.number),
                                          domains=resources.domains(svc, port, bare_names, default_port))
    tree = matcher_pb2.Matcher.MatcherTree(input=xds_extension_pb2.TypedExtensionConfig(
        name="routing-key", typed_config=_any(resources.routing_key_input(routing))))
    for f in forks:
        tree.exact_match_map.map[f.key].CopyFrom(matcher_pb2.Matcher.OnMatch(action=xds_extension_pb2.TypedExtensionConfig(
            name=f.key, typed_config=_any(_laptop_route(f, port, svc)))))
    baseline = route_components_pb2.Route(
        name="baseline", match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=naming.cluster(port.number, svc.fqdn),
                                               timeout=duration_pb2.Duration()))
    vh.matcher.CopyFrom(matcher_pb2.Matcher(matcher_tree=tree, on_no_match=matcher_pb2.Matcher.OnMatch(
        action=xds_extension_pb2.TypedExtensionConfig(name="baseline", typed_config=_any(baseline)))))
    return vh


def route_configuration(forks: tuple[LocalFork, ...], services: dict[str, Service],
                        routing: Routing) -> route_pb2.RouteConfiguration:
    """Per forked service port, the keys that fork it to a laptop; any other request to it reaches its baseline.
    A bare service name is a domain only when no other forked service has that name."""
    by_service: dict[str, list[LocalFork]] = {}
    for f in forks:
        by_service.setdefault(f.service, []).append(f)
    names_used: dict[str, int] = {}
    for sid in by_service:
        names_used[services[sid].name] = names_used.get(services[sid].name, 0) + 1
    rc = route_pb2.RouteConfiguration(name=naming.TUNNEL_ROUTE_CONFIG)
    for sid in sorted(by_service):
        svc = services[sid]
        for i, port in enumerate(svc.routable_ports):
            rc.virtual_hosts.append(_virtual_host(svc, port, by_service[sid], routing, names_used[svc.name] == 1, i == 0))
    rc.virtual_hosts.append(resources.unknown_host_virtual_host())
    return rc


def _internal_cluster() -> cluster_pb2.Cluster:
    """To the internal listener that holds the reverse-tunnel hop: a real host, so the aggregate cluster counts it."""
    c = cluster_pb2.Cluster(name=naming.TUNNEL_INTERNAL, connect_timeout=resources.CONNECT_TIMEOUT,
                            type=cluster_pb2.Cluster.STATIC)
    c.load_assignment.cluster_name = naming.TUNNEL_INTERNAL
    c.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(address_pb2.Address(
        envoy_internal_address=address_pb2.EnvoyInternalAddress(server_listener_name=naming.TUNNEL_INTERNAL)))
    c.typed_extension_protocol_options[resources.H2_OPTIONS_KEY].CopyFrom(resources._CALLER_OPTIONS)
    return c


def _reverse_cluster() -> cluster_pb2.Cluster:
    """Requests over the reverse tunnel of the laptop their `x-meshforge-tunnel-node` names (HTTP/2 only)."""
    c = cluster_pb2.Cluster(
        name=naming.TUNNEL_REVERSE, connect_timeout=resources.CONNECT_TIMEOUT, lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name="envoy.clusters.reverse_connection",
            typed_config=_any(reverse_connection_pb2.ReverseConnectionClusterConfig(
                cleanup_interval=duration_pb2.Duration(seconds=60), host_id_format=f"%REQ({NODE_HEADER})%"))))
    c.typed_extension_protocol_options[resources.H2_OPTIONS_KEY].CopyFrom(resources._H2_OPTIONS)
    return c


# retries in flight on one laptop's aggregate at once: Envoy's default is 3, and a laptop that goes away under load
# fails every request it had at once; each must get its one retry on the baseline, not the failure (the requests'
# own limits still bound them)
MAX_RETRIES = 1024


def _aggregate(name: str, baseline: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name, connect_timeout=resources.CONNECT_TIMEOUT, lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name="envoy.clusters.aggregate",
            typed_config=_any(aggregate_pb2.ClusterConfig(clusters=[naming.TUNNEL_INTERNAL, baseline]))),
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(thresholds=[circuit_breaker_pb2.CircuitBreakers.Thresholds(
            max_retries=wrappers_pb2.UInt32Value(value=MAX_RETRIES))]))


def clusters(forks: tuple[LocalFork, ...], services: dict[str, Service], eds: bool):
    """(cluster, load assignment or None) of the tunnel node: the internal and reverse clusters, and per forked
    service port its baseline and, per key, the aggregate of the laptop, then where the key goes without it
    (the fork's `otherwise`, as the sidecars would send it, or the baseline)."""
    out = [(_internal_cluster(), None), (_reverse_cluster(), None)]
    for sid in sorted({f.service for f in forks}):
        svc = services[sid]
        for port in svc.routable_ports:
            out.extend(resources.clusters_for(svc, port, (), eds))
            for f in forks:
                if f.service != sid:
                    continue
                otherwise = naming.cluster(port.number, svc.fqdn)
                if f.otherwise is not None:
                    otherwise = naming.cluster(port.number, svc.fqdn, f.key)
                    fork = ((f.key, Fork(sid, "", f.otherwise)),)
                    out.extend(resources.clusters_for(svc, port, fork, eds)[1:])  # as a sidecar's, for the key
                out.append((_aggregate(naming.laptop_cluster(port.number, svc.fqdn, f.key), otherwise), None))
    return out


# -- the tunnel node: listeners --------------------------------------------------------------------------------

def internal_listener() -> listener_pb2.Listener:
    """The hop over a reverse tunnel. Its own failure to reach the laptop is answered with the marker the route
    retries on; a laptop's response never carries the marker (it is removed from every upstream response)."""
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="meshforge_tunnel_internal", codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    rc = hcm.route_config
    rc.name = naming.TUNNEL_INTERNAL
    rc.response_headers_to_remove.append(DOWN_HEADER)
    rc.virtual_hosts.append(route_components_pb2.VirtualHost(name="laptops", domains=["*"], routes=[
        route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix="/"), route=route_components_pb2.RouteAction(
            cluster=naming.TUNNEL_REVERSE, timeout=duration_pb2.Duration()))]))
    hcm.local_reply_config.mappers.append(hcm_pb2.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(status_code_filter=accesslog_pb2.StatusCodeFilter(
            comparison=accesslog_pb2.ComparisonFilter(op=accesslog_pb2.ComparisonFilter.GE, value=base_pb2.RuntimeUInt32(
                default_value=500, runtime_key=_RUNTIME_MIN_STATUS)))),
        headers_to_add=[base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=DOWN_HEADER, value=DOWN_VALUE),
                                                   append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)]))
    hcm.http_filters.append(resources.router())
    return listener_pb2.Listener(name=naming.TUNNEL_INTERNAL, internal_listener=listener_pb2.Listener.InternalListenerConfig(),
                                 filter_chains=[listener_components_pb2.FilterChain(filters=[resources.hcm_filter(hcm)])])


def _san_matchers(owner: str) -> list[common_tls_pb2.SubjectAltNameMatcher]:
    M = common_tls_pb2.SubjectAltNameMatcher
    kinds = (M.URI,) if ":" in owner and "@" not in owner.split(":", 1)[0] else \
        (M.EMAIL,) if "@" in owner else (M.DNS, M.URI)
    return [M(san_type=k, matcher=string_pb2.StringMatcher(exact=owner)) for k in kinds]


def _accept_chain(fork: LocalFork) -> listener_components_pb2.FilterChain:
    validation = common_tls_pb2.CertificateValidationContext()
    if fork.owner:
        validation.match_typed_subject_alt_names.extend(_san_matchers(fork.owner))
    ctx = tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=["h2"],
            tls_certificate_sds_secret_configs=[secret_pb2.SdsSecretConfig(name=naming.TUNNEL_CERT_SECRET)],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=validation,
                validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(name=naming.TUNNEL_CA_SECRET))))
    handshake = reverse_tunnel_pb2.ReverseTunnel(
        ping_interval=duration_pb2.Duration(seconds=PING_INTERVAL_SECONDS),
        validation=reverse_tunnel_pb2.Validation(node_id_format=fork.node, cluster_id_format=fork.node))
    return listener_components_pb2.FilterChain(
        name=fork.node, filter_chain_match=listener_components_pb2.FilterChainMatch(server_names=[fork.node]),
        transport_socket=_tls_any(ctx),
        filters=[listener_components_pb2.Filter(name="envoy.filters.network.reverse_tunnel", typed_config=_any(handshake))])


def accept_listener(host: str, port: int, forks: tuple[LocalFork, ...]) -> listener_pb2.Listener | None:
    """Where laptops dial in (None while no fork goes to a laptop: nothing may attach)."""
    if not forks:
        return None
    return listener_pb2.Listener(
        name=naming.TUNNEL_ACCEPT, address=resources.socket_address(host, port),
        listener_filters=[listener_components_pb2.ListenerFilter(
            name="envoy.filters.listener.tls_inspector", typed_config=_any(tls_inspector_pb2.TlsInspector()))],
        filter_chains=[_accept_chain(f) for f in forks])


# -- bootstraps ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TunnelFiles:
    """The tunnel node's own certificate and key (laptops check it) and the CA that signs laptops' certificates."""

    cert_file: str
    key_file: str
    client_ca_file: str


def tunnel_bootstrap_extras(b: bootstrap_pb2.Bootstrap, files: TunnelFiles) -> None:
    """What the tunnel node's bootstrap adds to a node's: the reverse-tunnel acceptor, internal listeners, and the
    certificates as static secrets (the accept listener, served over xDS, names them)."""
    b.bootstrap_extensions.append(extension_pb2.TypedExtensionConfig(
        name="envoy.bootstrap.reverse_tunnel.upstream_socket_interface",
        typed_config=_any(upstream_rt_pb2.UpstreamReverseConnectionSocketInterface(
            stat_prefix="meshforge_tunnel", ping_failure_threshold=wrappers_pb2.UInt32Value(value=PING_FAILURES)))))
    b.bootstrap_extensions.append(extension_pb2.TypedExtensionConfig(
        name="envoy.bootstrap.internal_listener", typed_config=_any(internal_listener_pb2.InternalListener())))
    b.static_resources.secrets.append(secret_pb2.Secret(name=naming.TUNNEL_CERT_SECRET, tls_certificate=common_tls_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(filename=files.cert_file),
        private_key=base_pb2.DataSource(filename=files.key_file))))
    b.static_resources.secrets.append(secret_pb2.Secret(
        name=naming.TUNNEL_CA_SECRET, validation_context=common_tls_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(filename=files.client_ca_file))))


@dataclass(frozen=True)
class LaptopTls:
    """The laptop's side of the tunnel's TLS: the CA that signed the tunnel node's certificate, the name that
    certificate must carry, and the laptop's own certificate and key."""

    ca_file: str
    cert_file: str
    key_file: str
    server_name: str  # a DNS name or IP address in the tunnel node's certificate


def laptop_bootstrap(node: str, via: tuple[str, int], to: tuple[str, int], tls: LaptopTls, admin_port: int,
                     http2: bool = False, connections: int = 1) -> bootstrap_pb2.Bootstrap:
    """The laptop's Envoy (`meshforge connect`): it dials the tunnel node at `via` and keeps `connections` reverse
    tunnels as node `node`; requests that come back over them go to the local process at `to`. It listens on
    nothing but its admin port on loopback: nothing can connect to the laptop."""
    b = bootstrap_pb2.Bootstrap(node=base_pb2.Node(id=node, cluster=node))
    b.admin.address.CopyFrom(resources.socket_address("127.0.0.1", admin_port))
    b.bootstrap_extensions.append(extension_pb2.TypedExtensionConfig(
        name="envoy.bootstrap.reverse_tunnel.downstream_socket_interface",
        typed_config=_any(downstream_rt_pb2.DownstreamReverseConnectionSocketInterface(stat_prefix="meshforge_laptop"))))
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="meshforge_laptop", codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    rc = hcm.route_config
    rc.name = "meshforge_laptop"
    rc.request_headers_to_remove.append(NODE_HEADER)
    rc.virtual_hosts.append(route_components_pb2.VirtualHost(name="local", domains=["*"], routes=[
        route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix="/"), route=route_components_pb2.RouteAction(
            cluster="local", timeout=duration_pb2.Duration()))]))
    hcm.http_filters.append(resources.router())
    b.static_resources.listeners.append(listener_pb2.Listener(
        name="meshforge_laptop", address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address=f"rc://{node}:{node}:{TENANT}@{naming.TUNNEL_UPSTREAM}:{connections}", port_value=0,
            resolver_name="envoy.resolvers.reverse_connection")),
        filter_chains=[listener_components_pb2.FilterChain(filters=[resources.hcm_filter(hcm)])]))
    local = resources.cluster("local", Port("", to[1], "HTTP2" if http2 else "HTTP"), endpoints=(Endpoint(*to),),
                              eds=False)
    b.static_resources.clusters.append(local)
    up = resources.cluster(naming.TUNNEL_UPSTREAM, Port("", via[1], "HTTP"), endpoints=(Endpoint(*via),), eds=False)
    san = common_tls_pb2.SubjectAltNameMatcher(
        san_type=common_tls_pb2.SubjectAltNameMatcher.IP_ADDRESS if is_ip(tls.server_name)
        else common_tls_pb2.SubjectAltNameMatcher.DNS, matcher=string_pb2.StringMatcher(exact=tls.server_name))
    up.transport_socket.CopyFrom(_tls_any(tls_pb2.UpstreamTlsContext(sni=node, common_tls_context=tls_pb2.CommonTlsContext(
        alpn_protocols=["h2"],
        tls_certificates=[common_tls_pb2.TlsCertificate(certificate_chain=base_pb2.DataSource(filename=tls.cert_file),
                                                         private_key=base_pb2.DataSource(filename=tls.key_file))],
        validation_context=common_tls_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(filename=tls.ca_file), match_typed_subject_alt_names=[san])))))
    up.typed_extension_protocol_options[resources.H2_OPTIONS_KEY].CopyFrom(resources._H2_OPTIONS)
    b.static_resources.clusters.append(up)
    return b
