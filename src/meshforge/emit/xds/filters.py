"""The HTTP filters of meshforge's listeners, in one registry with one explicit order.

Input: what a listener's connection manager is built for (`Chain`: the node kind, the routing settings, the
edge, whether its callers are trusted, whether it is served over ADS with access logs). Output: the connection
manager's HTTP filters, in order, and what the filters need of the connection manager itself (headers removed
before anything reads them, the access log). Each filter says why it sits where it sits (Envoy Gateway's
`httpfilters.go` shape). Adding a filter is one `Filter` in `FILTERS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from ...model import Edge, Routing
from . import lua, preview_auth, resources
from .resources import AccessLogs


@dataclass(frozen=True)
class Chain:
    """The listener a connection manager is built for."""

    kind: str  # "sidecar" | "edge"
    routing: Routing
    edge: Edge | None = None
    trusted: bool = False  # the edge: callers in trustedSources keep their own key
    ads: bool = True  # served over ADS (RDS, access logs to serve); False: a static bootstrap
    access_logs: AccessLogs | None = None


@dataclass
class Patch:
    """What filters need of the connection manager around them."""

    removed: list[str] = field(default_factory=list)  # request headers removed before anything reads them
    access_logs: list = field(default_factory=list)  # AccessLog entries
    local_replies: list = field(default_factory=list)  # ResponseMappers of the connection manager's local replies


@dataclass(frozen=True)
class Filter:
    name: str
    order: int  # lower runs first
    why: str  # why it sits where it sits
    kinds: frozenset[str]  # the node kinds whose listeners have it
    build: Callable[[Chain, Patch], hcm_pb2.HttpFilter | None]  # None: not on this chain


def _baggage(chain: Chain, patch: Patch) -> hcm_pb2.HttpFilter:
    return resources.baggage_filter(chain.routing)


def _edge(chain: Chain, patch: Patch) -> hcm_pb2.HttpFilter:
    routing, edge = chain.routing, chain.edge
    if not chain.trusted:
        patch.removed.append(routing.header)  # an outside caller's routing header never selects a route
    wanted = resources.baggage_may_carry_the_key(routing)
    if edge.preview_domain:
        wanted.append(resources.header_contains(":authority", "." + edge.preview_domain, ignore_case=True))
    return resources.lua_unless_skipped("meshforge.edge_routing_key",
                                        lua.edge_source(routing.baggage_key, routing.header, edge.preview_domain,
                                                        chain.trusted), wanted)


def _preview_jwt(chain: Chain, patch: Patch) -> hcm_pb2.HttpFilter | None:
    auth = chain.edge.preview_auth if chain.edge is not None else None
    if auth is None:
        return None
    patch.local_replies.append(preview_auth.refused_mapper())
    return preview_auth.jwt_filter(auth)


def _preview_rbac(chain: Chain, patch: Patch) -> hcm_pb2.HttpFilter | None:
    if chain.edge is None or chain.edge.preview_auth is None:
        return None
    return preview_auth.rbac_filter()


def _log_budget(chain: Chain, patch: Patch) -> hcm_pb2.HttpFilter | None:
    logs = chain.access_logs
    if not chain.ads or logs is None:
        return None
    patch.access_logs.append(resources.access_log(chain.routing, logs))
    if not logs.rate:
        return None
    patch.removed.append(resources.UNLOGGED_HEADER)  # nobody opts out of being logged by sending the marker
    return resources.log_budget_filter(chain.routing, logs)


def _router(chain: Chain, patch: Patch) -> hcm_pb2.HttpFilter:
    return resources.router()


FILTERS: tuple[Filter, ...] = (
    Filter("envoy.filters.http.jwt_authn", 4, "checks a preview host's signed link (previewAuth) before any filter "
           "reads the request, so an outsider without one reaches nothing", frozenset({"edge"}), _preview_jwt),
    Filter("envoy.filters.http.rbac", 5, "right after the JWT filter, whose payload it reads: the token's audience "
           "must be this preview host's key (and its issue not before the key's notBefore)", frozenset({"edge"}),
           _preview_rbac),
    Filter("meshforge.baggage_routing_key", 10, "lifts the routing key out of baggage into the header the virtual "
           "hosts' matcher tree reads: before the router chooses a route, and before the log budget counts requests "
           "that carry a key", frozenset({"sidecar"}), _baggage),
    Filter("meshforge.edge_routing_key", 10, "the trust boundary: removes an outside caller's key (its header went "
           "before any filter, see Patch.removed) and sets a preview host's, before the route is chosen",
           frozenset({"edge"}), _edge),
    Filter("meshforge.access_log_budget", 20, "marks requests over the access-log budget; after the key is known "
           "(a keyed request is one the log keeps), before the router", frozenset({"sidecar", "edge"}), _log_budget),
    Filter("envoy.filters.http.router", 100, "sends the request: always last", frozenset({"sidecar", "edge"}),
           _router),
)


def http_filters(chain: Chain, filters: tuple[Filter, ...] = FILTERS) -> tuple[list[hcm_pb2.HttpFilter], Patch]:
    """The chain's HTTP filters in order, and what they need of the connection manager."""
    patch = Patch()
    out = []
    for f in sorted(filters, key=lambda f: f.order):
        if chain.kind in f.kinds:
            built = f.build(chain, patch)
            if built is not None:
                out.append(built)
    return out, patch
