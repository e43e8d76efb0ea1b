"""emit/xds/filters: the listeners' HTTP filters come from one registry, in one order, each with its reason."""

from __future__ import annotations

from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from meshforge.diagnostics import Span
from meshforge.emit.xds.filters import FILTERS, Chain, Filter, http_filters
from meshforge.emit.xds.resources import UNLOGGED_HEADER, AccessLogs
from meshforge.model import Edge, Routing

EDGE = Edge("web.shop", 80, ("shop.example.com",), "preview.example.com", (), "istio-system/gw", "istio-system/gw",
            Span())


def names(chain: Chain, filters=FILTERS) -> list[str]:
    return [f.name for f in http_filters(chain, filters)[0]]


def test_each_listener_gets_its_filters_in_the_registry_s_order():
    logs = AccessLogs(100)
    assert names(Chain("sidecar", Routing(), access_logs=logs)) == [
        "meshforge.baggage_routing_key", "meshforge.access_log_budget", "envoy.filters.http.router"]
    assert names(Chain("sidecar", Routing(), ads=False, access_logs=logs)) == [
        "meshforge.baggage_routing_key", "envoy.filters.http.router"]  # static: no server to log to
    assert names(Chain("edge", Routing(), EDGE, access_logs=logs)) == [
        "meshforge.edge_routing_key", "meshforge.access_log_budget", "envoy.filters.http.router"]
    _, patch = http_filters(Chain("edge", Routing(), EDGE, trusted=False, access_logs=logs))
    assert patch.removed == ["x-meshforge-routing-key", UNLOGGED_HEADER] and len(patch.access_logs) == 1
    _, trusted = http_filters(Chain("edge", Routing(), EDGE, trusted=True, access_logs=logs))
    assert trusted.removed == [UNLOGGED_HEADER]  # a trusted caller's routing header stays
    assert all(f.why for f in FILTERS) and FILTERS[-1].name == "envoy.filters.http.router"


def test_adding_an_http_filter_is_one_entry():
    """A filter for the edge alone, between the key and the budget (preview-link checks, say)."""
    extra = Filter("meshforge.test_only", 15, "between the key's filter and the budget", frozenset({"edge"}),
                   lambda chain, patch: hcm_pb2.HttpFilter(name="meshforge.test_only", typed_config=any_pb2.Any(
                       type_url="type.googleapis.com/" + router_pb2.Router.DESCRIPTOR.full_name)))
    registry = FILTERS + (extra,)
    assert names(Chain("edge", Routing(), EDGE, access_logs=AccessLogs(1)), registry) == [
        "meshforge.edge_routing_key", "meshforge.test_only", "meshforge.access_log_budget", "envoy.filters.http.router"]
    assert "meshforge.test_only" not in names(Chain("sidecar", Routing()), registry)
