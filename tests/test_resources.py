"""emit/xds/resources: domains, clusters per destination kind, and the O(1) key matcher."""

from __future__ import annotations

import pytest

from meshforge.emit.xds import naming
from meshforge.emit.xds.resources import H2_OPTIONS_KEY, clusters_for, domains, virtual_host
from meshforge.model import (
    Endpoint,
    EndpointsDestination,
    Fork,
    HostDestination,
    Port,
    Routing,
    Service,
    SubsetDestination,
)

HTTP = Port("http", 80, "HTTP")
GRPC = Port("grpc", 9090, "GRPC")
WEB = Service("web", "shop", "cluster.local", (HTTP, GRPC))
FORKS = (("k1", Fork("web.shop", "s1", HostDestination("web-k1.shop.svc.cluster.local", 8080))),
         ("k2", Fork("web.shop", "s2", EndpointsDestination((Endpoint("10.0.0.2", 80),)))))


def test_domains_are_the_names_that_reach_the_service():
    assert domains(WEB, HTTP, True, True) == [f"{n}:80" for n in WEB.names("shop")] + list(WEB.names("shop"))
    assert domains(WEB, GRPC, False, False) == [f"{n}:9090" for n in WEB.names("other")]
    assert "web" not in domains(WEB, HTTP, False, True)


def test_a_cluster_per_key_and_the_baseline():
    out = clusters_for(WEB, GRPC, FORKS, eds=True)
    assert [c.name for c, _ in out] == [naming.cluster(9090, WEB.fqdn), naming.cluster(9090, WEB.fqdn, "k1"),
                                        naming.cluster(9090, WEB.fqdn, "k2")]
    (base, none1), (host, none2), (eps, cla) = out
    assert none1 is None and none2 is None and cla.cluster_name == eps.name
    assert host.type == host.STRICT_DNS
    addr = host.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (addr.address, addr.port_value) == ("web-k1.shop.svc.cluster.local", 8080)
    assert eps.type == eps.EDS
    assert all(H2_OPTIONS_KEY in c.typed_extension_protocol_options for c, _ in out)  # gRPC speaks HTTP/2
    static = clusters_for(WEB, HTTP, FORKS, eds=False)
    assert static[2][0].type == static[2][0].STATIC and static[2][1] is None
    assert all(H2_OPTIONS_KEY not in c.typed_extension_protocol_options for c, _ in static)


def test_subsets_never_reach_the_envoy_builders():
    with pytest.raises(ValueError, match="capability check"):
        clusters_for(WEB, HTTP, (("k", Fork("web.shop", "s", SubsetDestination((("v", "1"),)))),), eds=True)


def test_virtual_host_maps_each_key_exactly_and_defaults_to_the_baseline():
    vh = virtual_host(WEB, HTTP, FORKS, Routing(), True, True)
    tree = vh.matcher.matcher_tree
    assert sorted(tree.exact_match_map.map) == ["k1", "k2"]
    assert not vh.routes
    plain = virtual_host(WEB, HTTP, (), Routing(), True, True)
    assert not plain.HasField("matcher") and plain.routes[0].route.cluster == naming.cluster(80, WEB.fqdn)
