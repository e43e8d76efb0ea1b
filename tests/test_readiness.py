"""controller/readiness: a fork is ready when its Service has a ready endpoint in its EndpointSlices; only live keys
route; the Envoy backend's endpoints come from the slices."""

from __future__ import annotations

from meshforge.controller.readiness import Endpoints, bind_endpoints, cluster_service, fork_ready, gate
from meshforge.model import (
    EndpointsDestination,
    Fork,
    HostDestination,
    KeyRoutes,
    Model,
    Port,
    Routing,
    Service,
)

CART = Service("cart", "shop", "cluster.local", (Port("http", 80, "HTTP"),))
SERVICES = {("shop", "cart"), ("shop", "cart-pr-1")}


def slice_(service: str, *endpoints: tuple[str, bool | None, bool | None], port: int = 8080) -> dict:
    return {"metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": [a], "conditions": {k: v for k, v in (("ready", r), ("terminating", t))
                                                            if v is not None}} for a, r, t in endpoints]}


def model(*forks: Fork) -> Model:
    return Model(Routing(), (CART,), (KeyRoutes("pr-1", "Sandbox", "pr-1", forks),))


def test_the_names_of_a_cluster_service_and_only_those_are_recognised():
    for host in ("cart-pr-1.shop", "cart-pr-1.shop.svc", "cart-pr-1.shop.svc.cluster.local", "CART-PR-1.shop.svc."):
        assert cluster_service(host, SERVICES, "cluster.local") == ("shop", "cart-pr-1"), host
    for host in ("cart-pr-1", "cart-pr-1.other", "cart-pr-1.shop.svc.corp.example", "api.stripe.com", "cart.shop.x"):
        assert cluster_service(host, SERVICES, "cluster.local") is None, host


def test_ready_and_not_terminating_endpoints_count():
    eps = Endpoints([slice_("cart-pr-1", ("10.0.0.1", None, None), ("10.0.0.2", False, None), ("10.0.0.3", True, True)),
                     slice_("cart", ("10.0.1.1", False, None)), {"metadata": {}, "endpoints": []}])
    assert eps.ready("shop", "cart-pr-1") and not eps.ready("shop", "cart") and not eps.ready("shop", "nope")
    assert [(e.address, e.port) for e in eps.of("shop", "cart-pr-1", "http", 80)] == [("10.0.0.1", 8080)]
    fork = Fork("cart.shop", "pr-1", HostDestination("cart-pr-1.shop.svc.cluster.local"))
    assert fork_ready(model(fork), model(fork).keys[0], eps, SERVICES).ok
    empty = Endpoints([slice_("cart-pr-1", ("10.0.0.2", False, None))])
    r = fork_ready(model(fork), model(fork).keys[0], empty, SERVICES)
    assert not r.ok and "cart-pr-1.shop" in r.why and "cart.shop" in r.why
    outside = Fork("cart.shop", "pr-1", HostDestination("cart.staging.example.com"))  # not observable: ready
    assert fork_ready(model(outside), model(outside).keys[0], empty, SERVICES).ok


def test_only_live_keys_route_and_forks_to_cluster_services_get_their_slices_endpoints():
    fork = Fork("cart.shop", "pr-1", HostDestination("cart-pr-1.shop"))
    m = model(fork)
    assert gate(m, set()).keys == () and gate(m, {"pr-1"}).keys == m.keys
    eps = Endpoints([slice_("cart-pr-1", ("10.0.0.1", True, None)), slice_("cart", ("10.0.1.1", True, None), port=9090)])
    bound = bind_endpoints(m, eps, SERVICES)
    assert bound.keys[0].forks[0].destination == EndpointsDestination(eps.of("shop", "cart-pr-1", "http", 80))
    assert [(e.address, e.port) for e in bound.services[0].endpoints] == [("10.0.1.1", 9090)]
    assert bind_endpoints(m, Endpoints([]), SERVICES).keys[0].forks[0].destination == fork.destination  # none yet
