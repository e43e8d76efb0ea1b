"""emit/xds/bootstrap: a sidecar's ADS bootstrap names its service and points at `serve`."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2

from meshforge.emit.xds.bootstrap import ads_bootstrap, node_proto
from meshforge.emit.xds.naming import XDS_CLUSTER
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


def test_the_cli_gives_each_kind_of_node_its_bootstrap(cli, tmp_path):
    """`bootstrap --service`, `--edge --listen-address` and `--tunnel` (CONTRACT §4, §5.4), as a user types them."""
    import yaml

    from meshforge.xdsapi import LISTEN_ADDRESS_METADATA, TUNNEL_ACCEPT_METADATA, TUNNEL_NODE

    edge = cli("bootstrap", "--edge", "--listen-address", "0.0.0.0:8080", "--xds-address", "127.0.0.1:18000")
    assert edge.exit_code == 0, edge.output
    assert yaml.safe_load(edge.output)["node"]["metadata"] == {LISTEN_ADDRESS_METADATA: "0.0.0.0:8080"}
    files = [str(tmp_path / n) for n in ("t.crt", "t.key", "ca.crt")]
    tunnel = cli("bootstrap", "--tunnel", "--listen-address", "0.0.0.0:15080", "--accept-address", "0.0.0.0:15443",
                 "--tunnel-cert-file", files[0], "--tunnel-key-file", files[1], "--tunnel-client-ca-file", files[2],
                 "--xds-address", "127.0.0.1:18000")
    assert tunnel.exit_code == 0, tunnel.output
    boot = yaml.safe_load(tunnel.output)
    assert boot["node"]["cluster"] == TUNNEL_NODE
    assert boot["node"]["metadata"] == {LISTEN_ADDRESS_METADATA: "0.0.0.0:15080", TUNNEL_ACCEPT_METADATA: "0.0.0.0:15443"}
    assert [e["name"] for e in boot["bootstrap_extensions"]] == [
        "envoy.bootstrap.reverse_tunnel.upstream_socket_interface", "envoy.bootstrap.internal_listener"]
    assert sorted(s["name"] for s in boot["static_resources"]["secrets"]) == [
        "meshforge_tunnel_cert", "meshforge_tunnel_client_ca"]


def test_bootstrap_usage_errors_say_what_is_missing(cli):
    x = ("--xds-address", "127.0.0.1:18000")
    cases = [
        (("--service", "a", "--edge"), "one of them"),
        (("--edge",), "--edge needs --listen-address"),
        (("--tunnel", "--listen-address", "0.0.0.0:1"), "--tunnel needs --accept-address"),
        (("--service", "a", "--listen-address", "0.0.0.0:1"), "is for --edge and --tunnel"),
        (("--service", "a", "--accept-address", "0.0.0.0:1"), "are for --tunnel"),
        (("--edge", "--listen-address", "0.0.0.0:1", "--transparent"), "--transparent is for a sidecar"),
        (("--tunnel", "--listen-address", "0.0.0.0:1", "--accept-address", "0.0.0.0:1", "--tunnel-cert-file", "a",
          "--tunnel-key-file", "b", "--tunnel-client-ca-file", "c"), "must differ"),
        (("--edge", "--listen-address", "example.com:1"), "must be an IP address"),
    ]
    for args, message in cases:
        r = cli("bootstrap", *args, *x)
        assert r.exit_code == 2 and message in r.output, (args, r.output)
