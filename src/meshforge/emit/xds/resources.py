"""Small pure builders: model pieces → Envoy protobuf messages, one function per resource kind.

Input: `Service`, `Fork`, `Routing`. Output: `Cluster`, `ClusterLoadAssignment`, `VirtualHost`,
`RouteConfiguration` messages and the HTTP filters' configurations (listeners are assembled in `listeners.py`
from the filter registry, `filters.py`). Routing per request is O(1) in the number of routing keys:
a forked service's virtual host holds an xDS matcher tree whose `exact_match_map` is keyed by the
routing-key header (the Lua filter fills that header from `baggage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.core.v3 import extension_pb2 as core_extension_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2 as grpc_als_pb2
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.common.matcher.action.v3 import skip_action_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_header_mutation_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2
from xds.type.matcher.v3 import matcher_pb2, regex_pb2, string_pb2

from ...model import (
    Edge,
    Endpoint,
    EndpointsDestination,
    HostDestination,
    Port,
    Routing,
    Service,
    SubsetDestination,
    WorkloadDestination,
)
from ...names import is_ip
from . import lua, naming

CONNECT_TIMEOUT = duration_pb2.Duration(seconds=2)
H2_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _any(msg) -> any_pb2.Any:
    """What `Any.Pack(msg, deterministic=True)` gives, without its per-call overhead (it runs per route)."""
    return any_pb2.Any(type_url=_TYPE_PREFIX + msg.DESCRIPTOR.full_name, value=msg.SerializeToString(deterministic=True))


_TYPE_PREFIX = "type.googleapis.com/"


def _h2_options() -> dict:
    opts = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()))
    return {H2_OPTIONS_KEY: _any(opts)}


def _caller_protocol_options() -> dict:
    """For ports whose protocol is not declared: speak upstream what the caller spoke (HTTP/1.1 or HTTP/2)."""
    opts = http_protocol_options_pb2.HttpProtocolOptions(
        use_downstream_protocol_config=http_protocol_options_pb2.HttpProtocolOptions.UseDownstreamHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()))
    return {H2_OPTIONS_KEY: _any(opts)}


def _socket(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def load_assignment(name: str, endpoints: tuple[Endpoint, ...]) -> endpoint_pb2.ClusterLoadAssignment:
    lb = [endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=_socket(e.address, e.port)))
          for e in sorted(endpoints, key=lambda e: (e.address, e.port))]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)])


def cluster(name: str, port: Port, *, host: str | None = None, host_port: int | None = None,
            endpoints: tuple[Endpoint, ...] = (), eds: bool = True) -> cluster_pb2.Cluster:
    """A DNS cluster for `host`, or one for static `endpoints`: served by EDS, or inline when `eds` is False."""
    c = cluster_pb2.Cluster(name=name, connect_timeout=CONNECT_TIMEOUT)
    if host is not None:
        c.type = cluster_pb2.Cluster.STRICT_DNS
        c.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        la = c.load_assignment  # built in place: this runs for every host fork of a mesh
        la.cluster_name = name
        sa = la.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
        sa.address, sa.port_value = host, host_port or port.number
    elif eds:
        c.type = cluster_pb2.Cluster.EDS
        c.eds_cluster_config.eds_config.CopyFrom(_ADS_SOURCE)
    else:
        static = all(is_ip(e.address) for e in endpoints)
        c.type = cluster_pb2.Cluster.STATIC if static else cluster_pb2.Cluster.STRICT_DNS
        c.load_assignment.CopyFrom(load_assignment(name, endpoints))
    options = _H2_OPTIONS if port.http2 else _CALLER_OPTIONS if port.undeclared else None
    if options is not None:
        c.typed_extension_protocol_options[H2_OPTIONS_KEY].CopyFrom(options)
    return c


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource(),
                                          resource_api_version=config_source_pb2.V3)


# built once, copied into each cluster (never changed: CopyFrom reads them)
_ADS_SOURCE = ads_source()
_H2_OPTIONS = _h2_options()[H2_OPTIONS_KEY]
_CALLER_OPTIONS = _caller_protocol_options()[H2_OPTIONS_KEY]


def clusters_for(svc: Service, port: Port, forks, eds: bool) -> list[tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]]:
    """The baseline cluster of one service port and a cluster per routing key that forks it.

    Returns (cluster, load assignment served by EDS or None).
    """
    out = []
    base = naming.cluster(port.number, svc.fqdn)
    if svc.endpoints:
        out.append((cluster(base, port, endpoints=svc.endpoints, eds=eds), load_assignment(base, svc.endpoints) if eds else None))
    else:
        out.append((cluster(base, port, host=svc.fqdn), None))
    for key, fork in forks:
        name = naming.cluster(port.number, svc.fqdn, key)
        match fork.destination:
            case HostDestination(host=host, port=host_port):
                out.append((cluster(name, port, host=host, host_port=host_port), None))
            case EndpointsDestination(endpoints=eps):
                out.append((cluster(name, port, endpoints=eps, eds=eds), load_assignment(name, eps) if eds else None))
            case SubsetDestination():
                raise ValueError(f"{fork.service}: label subsets reach the Envoy backend only past the capability "
                                 "check (backends.check), which refuses them")
            case WorkloadDestination():
                raise ValueError("workload forks are lowered to host forks before any backend (lower.workload_forks)")
            case other:
                assert_never(other)
    return out


_ANY_PATH = route_components_pb2.RouteMatch(prefix="/")
_NO_TIMEOUT = duration_pb2.Duration(seconds=0)


def _route(cluster_name: str, name: str) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        name=name, match=_ANY_PATH, route=route_components_pb2.RouteAction(cluster=cluster_name, timeout=_NO_TIMEOUT))


_ROUTE_URL = _TYPE_PREFIX + route_components_pb2.Route.DESCRIPTOR.full_name


def _action(route: route_components_pb2.Route, name: str) -> matcher_pb2.Matcher.OnMatch:
    return matcher_pb2.Matcher.OnMatch(action=xds_extension_pb2.TypedExtensionConfig(name=name, typed_config=_any(route)))


def domains(svc: Service, port: Port, same_namespace: bool, default_port: bool) -> list[str]:
    """Authorities that reach this service port: name (same namespace only, as Kubernetes DNS),
    name.namespace, name.namespace.svc, FQDN, each with `:port`, and without it on the default port."""
    hosts = svc.names(svc.namespace if same_namespace else None)
    out = [f"{h}:{port.number}" for h in hosts]
    if default_port:
        out += hosts
    return out


def virtual_host(svc: Service, port: Port, forks, routing: Routing, same_namespace: bool,
                 default_port: bool, hosts: list[str] | None = None) -> route_components_pb2.VirtualHost:
    """The routing table of one service port: the baseline, and per routing key its fork (O(1) lookup).
    `hosts` replaces the service's own names (the edge's public hosts)."""
    vh = route_components_pb2.VirtualHost(
        name=naming.virtual_host(svc.id, port.number) if hosts is None else f"public:{svc.id}:{port.number}",
        domains=domains(svc, port, same_namespace, default_port) if hosts is None else hosts)
    baseline = _route(naming.cluster(port.number, svc.fqdn), "baseline")
    keyed = list(forks)  # every fork has a cluster (clusters_for)
    if not keyed:
        vh.routes.append(baseline)
        return vh
    tree = matcher_pb2.Matcher.MatcherTree(input=xds_extension_pb2.TypedExtensionConfig(
        name="routing-key", typed_config=_any(routing_key_input(routing))))
    table = tree.exact_match_map.map
    for key, _ in keyed:  # each entry built in place (this runs for every fork of a mesh)
        action = table[key].action
        action.name = key
        action.typed_config.type_url = _ROUTE_URL
        action.typed_config.value = _route(naming.cluster(port.number, svc.fqdn, key), key).SerializeToString(
            deterministic=True)
    vh.matcher.CopyFrom(matcher_pb2.Matcher(matcher_tree=tree, on_no_match=_action(baseline, "baseline")))
    return vh


def routing_key_input(routing: Routing) -> http_inputs_pb2.HttpRequestHeaderMatchInput:
    """What a virtual host's matcher tree is keyed by: the routing-key header (the carrier filters fill it)."""
    return http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=routing.header)


UNKNOWN_HOST_BODY = (
    "meshforge: this sidecar knows no service by the host this request named (its Host / :authority).\n"
    "A sidecar is told about the services its own service depends on (dependsOn, or the meshforge.dev/depends-on "
    "annotation); check the name (name, name.namespace or the FQDN, with or without the port) and those "
    "dependencies (meshforge explain, /debug/config?node=...).\n"
    "Calls to hosts outside the mesh must not go through the sidecar: when http_proxy points at it, list them "
    "in no_proxy (no_proxy=.example.com,api.github.com).\n")


def unknown_host_virtual_host() -> route_components_pb2.VirtualHost:
    """The catch-all of a sidecar's routes: a host it was not told about gets a 404 that says why, instead of
    Envoy's empty one."""
    return route_components_pb2.VirtualHost(
        name="unknown-host", domains=["*"],
        routes=[route_components_pb2.Route(
            name="unknown-host", match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(
                status=404, body=base_pb2.DataSource(inline_string=UNKNOWN_HOST_BODY)))])


def passthrough_virtual_host() -> route_components_pb2.VirtualHost:
    """The catch-all of a transparent sidecar's routes: a host the mesh does not know goes where the
    application sent it (the connection's original destination), untouched."""
    return route_components_pb2.VirtualHost(
        name="passthrough", domains=["*"],
        routes=[route_components_pb2.Route(
            name="passthrough", match=route_components_pb2.RouteMatch(prefix="/"),
            route=route_components_pb2.RouteAction(cluster=naming.PASSTHROUGH_CLUSTER,
                                                   timeout=duration_pb2.Duration()))])


def passthrough_cluster() -> cluster_pb2.Cluster:
    """Connections (and requests) to destinations the mesh does not know: to the original destination the
    capture rules redirected (restored by the listener's original_dst filter)."""
    return cluster_pb2.Cluster(
        name=naming.PASSTHROUGH_CLUSTER, type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED, connect_timeout=duration_pb2.Duration(seconds=5))


def route_configuration(vhosts) -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration(name=naming.ROUTE_CONFIG)
    rc.virtual_hosts.extend(vhosts)
    return rc


def header_contains(header: str, text: str, ignore_case: bool = False):
    P = matcher_pb2.Matcher.MatcherList.Predicate
    return P(single_predicate=P.SinglePredicate(
        input=xds_extension_pb2.TypedExtensionConfig(
            name=header, typed_config=_any(http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=header))),
        value_match=string_pb2.StringMatcher(contains=text, ignore_case=ignore_case)))


def _header_present(header: str):
    P = matcher_pb2.Matcher.MatcherList.Predicate
    return P(single_predicate=P.SinglePredicate(
        input=xds_extension_pb2.TypedExtensionConfig(
            name=header, typed_config=_any(http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=header))),
        value_match=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(
            google_re2=regex_pb2.RegexMatcher.GoogleRE2(), regex=".*"))))


def _unless_skipped(name: str, config, wanted: list) -> hcm_pb2.HttpFilter:
    """An HTTP filter that runs only for requests matching one of the `wanted` predicates: the others
    (most traffic) pay a test in C++ instead of the filter."""
    P = matcher_pb2.Matcher.MatcherList.Predicate
    wants = wanted[0] if len(wanted) == 1 else P(or_matcher=P.PredicateList(predicate=wanted))
    skip = matcher_pb2.Matcher(matcher_list=matcher_pb2.Matcher.MatcherList(matchers=[
        matcher_pb2.Matcher.MatcherList.FieldMatcher(
            predicate=P(not_matcher=wants),
            on_match=matcher_pb2.Matcher.OnMatch(action=xds_extension_pb2.TypedExtensionConfig(
                name="skip", typed_config=_any(skip_action_pb2.SkipFilter()))))]))
    return hcm_pb2.HttpFilter(name=name, typed_config=_any(
        extension_matcher_pb2.ExtensionWithMatcher(xds_matcher=skip, extension_config=core_extension_pb2.TypedExtensionConfig(
            name=name, typed_config=_any(config)))))


def lua_unless_skipped(name: str, source: str, wanted: list) -> hcm_pb2.HttpFilter:
    """A Lua filter that runs only for requests matching one of the `wanted` predicates (a substring test
    in C++ instead of a Lua call for the others)."""
    return _unless_skipped(name, lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=source),
                                             clear_route_cache=wrappers_pb2.BoolValue(value=True)), wanted)


def baggage_may_carry_the_key(routing: Routing) -> list:
    """Predicates for a `baggage` header that may hold the routing-key member: its name as written, or
    anything encoded ('%', '+'), since member names are compared decoded (carriers.decoded)."""
    return [header_contains("baggage", routing.baggage_key), header_contains("baggage", "%"),
            header_contains("baggage", "+")]


def baggage_filter(routing: Routing) -> hcm_pb2.HttpFilter:
    """The Lua filter that lifts the key out of `baggage`, skipped for requests whose `baggage` can hold no
    routing-key member (most traffic: a test in C++ instead of a Lua call)."""
    return lua_unless_skipped("meshforge.baggage_routing_key", lua.source(routing.baggage_key, routing.header),
                               baggage_may_carry_the_key(routing))


def router() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))


def hcm_filter(hcm: hcm_pb2.HttpConnectionManager) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager", typed_config=_any(hcm))


def remove_early(hcm: hcm_pb2.HttpConnectionManager, headers: list[str]) -> None:
    """Headers removed from a request before any filter or route reads them."""
    if headers:
        hcm.early_header_mutation_extensions.append(core_extension_pb2.TypedExtensionConfig(
            name="envoy.http.early_header_mutation.header_mutation",
            typed_config=_any(early_header_mutation_pb2.HeaderMutation(
                mutations=[mutation_rules_pb2.HeaderMutation(remove=h) for h in headers]))))


def socket_address(address: str, port: int) -> address_pb2.Address:
    return _socket(address, port)


ACCESS_LOG_FLUSH = duration_pb2.Duration(nanos=200_000_000)
ACCESS_LOG_BUFFER = 256 * 1024  # bytes: under load, flushed by time (5 messages a second), not every few ms
DEFAULT_ACCESS_LOG_RATE = 100  # logged requests a second per listener, at most
UNLOGGED_HEADER = "x-meshforge-unlogged"  # set by the log budget on requests over it; removed from callers'


@dataclass(frozen=True)
class AccessLogs:
    """Listeners send access logs to `serve`: at most `rate` requests a second per listener (a token
    bucket with a burst of as many; 0: every request). Logging a request costs the proxy about as much as
    routing it; the budget keeps a load test's cost flat while a person's requests are all logged."""

    rate: int = DEFAULT_ACCESS_LOG_RATE


def _logged(routing: Routing) -> list:
    """The requests doctor and the dashboard can use: those carrying a routing key or a trace context."""
    return [routing.header, "traceparent"]


def log_budget_filter(routing: Routing, logs: AccessLogs) -> hcm_pb2.HttpFilter:
    """A token bucket over the requests that would be logged (after the baggage filter has lifted the key),
    never enforced: a request over the budget gets `UNLOGGED_HEADER`, which the access log filter skips."""
    per_second = logs.rate
    budget = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="meshforge_access_log_budget",
        token_bucket=token_bucket_pb2.TokenBucket(max_tokens=per_second, tokens_per_fill=wrappers_pb2.UInt32Value(value=per_second),
                                                  fill_interval=duration_pb2.Duration(seconds=1)),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=percent_pb2.FractionalPercent(numerator=100)),
        filter_enforced=base_pb2.RuntimeFractionalPercent(default_value=percent_pb2.FractionalPercent(numerator=0)),
        request_headers_to_add_when_not_enforced=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=UNLOGGED_HEADER, value="budget"),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)])
    return _unless_skipped("meshforge.access_log_budget", budget, [_header_present(h) for h in _logged(routing)])


def access_log(routing: Routing, logs: AccessLogs) -> accesslog_pb2.AccessLog:
    """Envoy's gRPC access log to `serve`, over the bootstrap's xDS cluster (same address, same TLS):
    per request the routing key seen (after the baggage filter), `traceparent`, the cluster chosen; only
    for requests that carry a routing key or a trace context, within the log budget."""
    cfg = grpc_als_pb2.HttpGrpcAccessLogConfig(
        common_config=grpc_als_pb2.CommonGrpcAccessLogConfig(
            log_name="meshforge", transport_api_version=config_source_pb2.V3,
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=naming.XDS_CLUSTER)),
            buffer_flush_interval=ACCESS_LOG_FLUSH, buffer_size_bytes=wrappers_pb2.UInt32Value(value=ACCESS_LOG_BUFFER)),
        additional_request_headers_to_log=_logged(routing))
    F = accesslog_pb2.AccessLogFilter
    present = [F(header_filter=accesslog_pb2.HeaderFilter(
        header=route_components_pb2.HeaderMatcher(name=h, present_match=True))) for h in _logged(routing)]
    wanted = F(or_filter=accesslog_pb2.OrFilter(filters=present))
    if logs.rate:
        within = F(header_filter=accesslog_pb2.HeaderFilter(
            header=route_components_pb2.HeaderMatcher(name=UNLOGGED_HEADER, present_match=True, invert_match=True)))
        wanted = F(and_filter=accesslog_pb2.AndFilter(filters=[wanted, within]))
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc", typed_config=_any(cfg), filter=wanted)


# -- the edge -----------------------------------------------------------------------------------------

def preview_virtual_host(host: str, key: str, cluster_name: str) -> route_components_pb2.VirtualHost:
    """`<key>.<previewDomain>`: one exact domain (looked up by hash), one route to the key's version (with
    previewAuth, `preview_auth.signed` adds what checks the link)."""
    return route_components_pb2.VirtualHost(name=f"preview:{key}", domains=[host], routes=[_route(cluster_name, key)])


def unknown_preview_virtual_host(edge: Edge) -> route_components_pb2.VirtualHost:
    body = (f"meshforge: no active sandbox or route group has the routing key this host names "
            f"(<routing key>.{edge.preview_domain}); it may have expired or been deleted\n")
    return route_components_pb2.VirtualHost(
        name="preview:unknown", domains=[f"*.{edge.preview_domain}"],
        routes=[route_components_pb2.Route(
            name="unknown-preview-host", match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(
                status=404, body=base_pb2.DataSource(inline_string=body)))])


def edge_unknown_host_virtual_host(edge: Edge) -> route_components_pb2.VirtualHost:
    """The edge's catch-all: a host it does not serve gets a 404 that names the hosts it does."""
    served = list(edge.hosts) + ([f"<routing key>.{edge.preview_domain}"] if edge.preview_domain else [])
    body = f"meshforge edge: this host is not served here; it serves {', '.join(served)}\n"
    return route_components_pb2.VirtualHost(
        name="unknown-host", domains=["*"],
        routes=[route_components_pb2.Route(
            name="unknown-host", match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(
                status=404, body=base_pb2.DataSource(inline_string=body)))])


