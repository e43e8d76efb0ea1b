"""emit/xds/bootstrap: a sidecar's ADS bootstrap names its service and points at `serve`."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2

from meshforge.emit.xds.bootstrap import ads_bootstrap, node_proto
from meshforge.emit.xds.names import XDS_CLUSTER
from meshforge.xdsapi import DEFAULT_ADMIN_PORT, DEFAULT_OUTBOUND_PORT, OUTBOUND_PORT_METADATA


def test_node_names_the_service_and_carries_the_outbound_port():
    b = ads_bootstrap("cart", "127.0.0.1", 18000, node_id="n1")
    assert (b.node.cluster, b.node.id) == ("cart.default", "n1")
    assert b.node.metadata.fields[OUTBOUND_PORT_METADATA].string_value == str(DEFAULT_OUTBOUND_PORT)
    assert b.admin.address.socket_address.port_value == DEFAULT_ADMIN_PORT
    assert ads_bootstrap("cart.shop", "127.0.0.1", 1, outbound_port=16001).node.metadata.fields[
        OUTBOUND_PORT_METADATA].string_value == "16001"
    assert node_proto("a.b", "id", 7).cluster == "a.b"


def test_sotw_or_delta_and_the_xds_cluster():
    sotw = ads_bootstrap("cart.shop", "127.0.0.1", 18000)
    delta = ads_bootstrap("cart.shop", "meshforge.infra", 18000, delta=True, admin_port=0)
    assert sotw.dynamic_resources.ads_config.api_type == config_source_pb2.ApiConfigSource.GRPC
    assert delta.dynamic_resources.ads_config.api_type == config_source_pb2.ApiConfigSource.DELTA_GRPC
    (xs,) = sotw.static_resources.clusters
    (xd,) = delta.static_resources.clusters
    assert xs.name == xd.name == XDS_CLUSTER
    assert xs.type == xs.STATIC and xd.type == xd.STRICT_DNS  # an IP, or a name the proxy resolves
    assert not delta.HasField("admin")
    ep = xd.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (ep.address, ep.port_value) == ("meshforge.infra", 18000)
