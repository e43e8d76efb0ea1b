"""emit/xds/nodes: a node's scope (whom it is told about, and the key nodes of one configuration share) and each
node kind's listener. Each kind's listener in a real Envoy: test_serve, test_edge, test_connect."""

from __future__ import annotations

from meshforge.diagnostics import Span
from meshforge.emit.xds import naming
from meshforge.emit.xds.nodes import EDGE, SIDECAR, TUNNEL
from meshforge.model import Dependency, Edge, Port, Routing, Service
from meshforge.xdsapi import EDGE_HOST, SIDECAR_HOST

ALL = ("cart.shop", "pay.shop", "web.shop")


def web(*deps: str | None) -> Service:
    return Service("web", "shop", "cluster.local", (Port("http", 80, "HTTP"),),
                   depends_on=None if deps == (None,) else tuple(Dependency(d, False, Span()) for d in deps))


def test_a_sidecar_is_told_about_its_live_dependencies_and_shares_its_configuration_by_them():
    key, scope = SIDECAR.scope(web("cart.shop", "pay.shop"), frozenset(ALL), ALL)
    assert scope == ("cart.shop", "pay.shop") and key == ("sidecar", "shop", scope)
    assert SIDECAR.scope(web("cart.shop", "gone.shop"), frozenset(ALL), ALL)[1] == ("cart.shop",)  # not routable
    assert SIDECAR.scope(web(None), frozenset(ALL), ALL) == (("sidecar", "shop", None), ALL)  # unknown: everything
    assert SIDECAR.scope(web(), frozenset(ALL), ALL)[1] == ()
    other = Service("api", "shop", "cluster.local", (),
                    depends_on=tuple(Dependency(d, True, Span()) for d in ("cart.shop", "pay.shop")))
    assert SIDECAR.scope(other, frozenset(ALL), ALL)[0] == key  # same namespace, same scope: one configuration
    assert EDGE.scope(web("cart.shop"), frozenset(ALL), ALL)[0] != SIDECAR.scope(web("cart.shop"), frozenset(ALL), ALL)[0]


def test_each_kind_listens_where_its_bootstrap_says_and_routes_by_its_own_configuration():
    assert (SIDECAR.default_host, EDGE.default_host, TUNNEL.default_host) == (SIDECAR_HOST, EDGE_HOST, EDGE_HOST)
    assert [k.route_config for k in (SIDECAR, EDGE, TUNNEL)] == [naming.ROUTE_CONFIG, naming.EDGE_ROUTE_CONFIG,
                                                                naming.TUNNEL_ROUTE_CONFIG]
    edge = Edge("web.shop", 80, ("shop.example.test",), "preview.example.test", (), "istio-system/ingressgateway",
                "istio-system/gateway", Span())
    for kind in (SIDECAR, EDGE):
        lis = kind.listener("127.0.0.1", 15999, Routing(), edge, None, None)
        assert (lis.address.socket_address.address, lis.address.socket_address.port_value) == ("127.0.0.1", 15999)
        assert kind.route_config.encode() in lis.SerializeToString()  # RDS names the kind's route configuration
