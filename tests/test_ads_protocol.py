"""The xDS protocol, driven by hand with a raw gRPC client against a real `meshforge serve`."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.rpc import status_pb2

from meshforge.xdsapi import DEFAULT_OUTBOUND_PORT

from .serve_harness import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SPEC,
    RawClient,
    Server,
    eds_name,
    node,
    sandbox,
    wait_until,
)


@pytest.fixture
def server(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    (d / "pr-1.yaml").write_text(sandbox("pr-1"))
    with Server([d]) as s:
        s.dir = d
        yield s


@pytest.fixture
def client(server):
    clients = []

    def make(delta=False):
        c = RawClient(server.xds_port, delta)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def names_of(resp) -> list[str]:
    return sorted(cluster_pb2.Cluster.FromString(a.value).name for a in resp.resources)


def test_sotw_ack_nack_and_new_snapshot(server, client):
    c = client()
    c.send(node=node("web.shop"), type_url=CLUSTER)
    r1 = c.recv()
    assert r1.type_url == CLUSTER and r1.nonce and r1.version_info
    assert names_of(r1) == sorted([eds_name(), eds_name("pr-1")])
    c.send(type_url=CLUSTER, version_info=r1.version_info, response_nonce=r1.nonce)  # ACK
    assert c.nothing()
    c.send(type_url=CLUSTER, version_info="", response_nonce=r1.nonce,
           error_detail=status_pb2.Status(code=3, message="cluster rejected by test"))  # NACK
    assert c.nothing()  # not answered by resending the same configuration
    wait_until(lambda: server.metric("meshforge_xds_nacks_total") == 1)
    assert "NACK from node raw-client (cluster web.shop) for CDS: cluster rejected by test" in server.log()
    (server.dir / "pr-2.yaml").write_text(sandbox("pr-2"))
    r2 = c.recv()
    assert r2.version_info != r1.version_info and eds_name("pr-2") in names_of(r2)


def test_sotw_stale_nonce_is_ignored(server, client):
    c = client()
    c.send(node=node("web.shop"), type_url=ENDPOINT, resource_names=[eds_name("pr-1")])
    r1 = c.recv()
    c.send(type_url=ENDPOINT, resource_names=[eds_name("pr-1")], response_nonce=r1.nonce, version_info=r1.version_info)
    (server.dir / "pr-1.yaml").write_text(sandbox("pr-1", port=11))  # endpoints change: a new EDS response
    r2 = c.recv()
    assert r2.nonce != r1.nonce
    # a request carrying the superseded nonce (and another subscription) is stale: ignored
    c.send(type_url=ENDPOINT, resource_names=[eds_name()], response_nonce=r1.nonce, version_info=r1.version_info)
    assert c.nothing()
    # the same change with the current nonce is honoured
    c.send(type_url=ENDPOINT, resource_names=[eds_name()], response_nonce=r2.nonce, version_info=r2.version_info)
    r3 = c.recv()  # the baseline's static endpoints are served by EDS too
    assert [a.value for a in r3.resources] and eds_name().encode() in r3.resources[0].value


def test_sotw_subscription_to_a_name_that_appears_later(server, client):
    c = client()
    c.send(node=node("web.shop"), type_url=ENDPOINT, resource_names=[eds_name("pr-9")])
    r1 = c.recv()
    assert len(r1.resources) == 0
    c.send(type_url=ENDPOINT, resource_names=[eds_name("pr-9")], response_nonce=r1.nonce, version_info=r1.version_info)
    (server.dir / "pr-9.yaml").write_text(sandbox("pr-9"))
    r2 = c.recv()
    assert len(r2.resources) == 1 and r2.version_info != r1.version_info


def test_unknown_node_gets_an_empty_valid_configuration(server, client):
    c = client()
    for t in (CLUSTER, LISTENER):
        c.send(node=node("ghost.nowhere"), type_url=t)
        r = c.recv()
        assert r.type_url == t and len(r.resources) == 0
    assert "names no known service" in server.log() and "ghost.nowhere" in server.log()


def test_delta_wildcard_ack_unsubscribe_and_nack(server, client):
    c = client(delta=True)
    c.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[])
    r1 = c.recv()
    assert sorted(r.name for r in r1.resources) == sorted([eds_name(), eds_name("pr-1")])
    assert all(len(r.version) == 16 for r in r1.resources) and not r1.removed_resources
    c.send(type_url=CLUSTER, response_nonce=r1.nonce, delta=True)  # ACK
    c.send(type_url=ENDPOINT, resource_names_subscribe=[eds_name("pr-1")])
    e1 = c.recv()
    assert [r.name for r in e1.resources] == [eds_name("pr-1")]
    c.send(type_url=ENDPOINT, response_nonce=e1.nonce, delta=True)
    assert c.nothing()
    c.send(type_url=ENDPOINT, resource_names_unsubscribe=[eds_name("pr-1")])
    assert c.nothing()
    (server.dir / "pr-1.yaml").write_text(sandbox("pr-1", port=12))  # changes only what we unsubscribed from
    assert c.nothing()
    (server.dir / "pr-3.yaml").write_text(sandbox("pr-3"))  # a new cluster: CDS delta carries just it
    r2 = c.recv()
    assert r2.type_url == CLUSTER and [r.name for r in r2.resources] == [eds_name("pr-3")]
    c.send(type_url=CLUSTER, response_nonce=r2.nonce, delta=True,
           error_detail=status_pb2.Status(code=3, message="nope"))
    assert c.nothing()
    wait_until(lambda: server.metric("meshforge_xds_nacks_total") == 1)
    (server.dir / "pr-3.yaml").unlink()
    r3 = c.recv()
    assert r3.removed_resources == [eds_name("pr-3")] and not r3.resources


def test_delta_reconnect_with_initial_resource_versions(server, client):
    c = client(delta=True)
    c.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[])
    r1 = c.recv()
    have = {r.name: r.version for r in r1.resources}
    c.close()
    # reconnect knowing everything: nothing to send
    c2 = client(delta=True)
    c2.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[], initial_resource_versions=have)
    assert c2.nothing()
    # reconnect with one stale version and one resource that no longer exists
    stale = dict(have)
    stale[eds_name("pr-1")] = "0000000000000000"
    stale[eds_name("gone")] = "1111111111111111"
    c3 = client(delta=True)
    c3.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[], initial_resource_versions=stale)
    r3 = c3.recv()
    assert [r.name for r in r3.resources] == [eds_name("pr-1")] and r3.removed_resources == [eds_name("gone")]


def test_route_and_listener_served_by_name_and_wildcard(server, client):
    c = client()
    c.send(node=node("web.shop", port=15123), type_url=LISTENER)
    r = c.recv()
    from envoy.config.listener.v3 import listener_pb2

    listener = listener_pb2.Listener.FromString(r.resources[0].value)
    assert listener.name == "meshforge_outbound" and listener.address.socket_address.port_value == 15123
    c.send(type_url=ROUTE, resource_names=["meshforge_outbound"])
    rr = c.recv()
    assert rr.type_url == ROUTE and len(rr.resources) == 1


def test_only_nodes_whose_resources_changed_are_pushed(server, client):
    web, lone = client(), client()
    acked = {}
    for c, n in ((web, "web.shop"), (lone, "lone.shop")):
        c.send(node=node(n), type_url=CLUSTER)
        r = c.recv()
        c.send(type_url=CLUSTER, version_info=r.version_info, response_nonce=r.nonce)
        acked[n] = r
    assert len(acked["lone.shop"].resources) == 0
    pushes = server.metric("meshforge_xds_pushes_total")
    (server.dir / "pr-5.yaml").write_text(sandbox("pr-5"))
    r = web.recv()
    assert eds_name("pr-5") in names_of(r)
    assert lone.nothing(0.5)  # its scope (dependsOn: []) holds nothing that changed
    assert server.metric("meshforge_xds_pushes_total") == pushes + 1
    assert server.metric("meshforge_xds_push_latency_seconds_count", 'type="CDS"') == 1  # the snapshot-driven one


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_nothing_is_served_until_the_specs_are_valid(tmp_path, delta):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC.replace("name: api\n", "name: api\n    bogus: 1\n", 1))
    with Server([d]) as s:
        status, body = s.get("/readyz")
        assert status == 503 and "unknown field 'bogus'" in body
        c = RawClient(s.xds_port, delta)
        try:
            if delta:
                c.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[])
            else:
                c.send(node=node("web.shop"), type_url=CLUSTER)
            assert c.nothing(0.5)  # an empty answer would wipe the routes of a proxy that reconnects
            (d / "baseline.yaml").write_text(SPEC)
            r = c.recv()
            assert len(r.resources) == 1 and s.get("/readyz") == (200, "ready\n")
        finally:
            c.close()


def test_admin_endpoints(server, client):
    import json

    assert server.get("/healthz") == (200, "ok\n") and server.get("/readyz") == (200, "ready\n")
    sotw, delta = client(), client(delta=True)
    sotw.send(node=node("web.shop"), type_url=CLUSTER)
    delta.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[])
    sotw.recv(), delta.recv()
    wait_until(lambda: server.metric("meshforge_connected_proxies", 'stream="sotw"') == 1
               and server.metric("meshforge_connected_proxies", 'stream="delta"') == 1)
    assert server.metric("meshforge_xds_pushes_total", 'type="CDS"') >= 2
    assert server.metric("meshforge_spec_valid") == 1
    status, body = server.get("/debug/config?node=web.shop")
    cfg = json.loads(body)
    assert status == 200 and cfg["node"] == "web.shop"
    assert sorted(c["name"] for c in cfg["resources"]["Cluster"]) == sorted([eds_name(), eds_name("pr-1")])
    assert cfg["resources"]["Listener"][0]["resource"]["address"]["socket_address"]["port_value"] == DEFAULT_OUTBOUND_PORT
    status, body = server.get("/debug/config?node=nope.nowhere")
    assert status == 404 and "web.shop" in json.loads(body)["nodes"]
    sotw.close()
    wait_until(lambda: server.metric("meshforge_connected_proxies", 'stream="sotw"') == 0)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_a_cluster_still_routed_to_is_never_removed(server, client, delta):
    """Sandbox pr-2 is added (CDS sent, not yet ACKed), then pr-1 is deleted. When the CDS ACK comes, pr-1's
    cluster must stay until the proxy has ACKed routes that no longer send traffic to it (make-before-break):
    removing it first turns pr-1's in-flight traffic into 503s."""
    c = client(delta=delta)
    kw = {"delta": True} if delta else {}
    sub = (lambda names: {"resource_names_subscribe": names}) if delta else (lambda names: {"resource_names": names})

    def ack(r):
        c.send(type_url=r.type_url, response_nonce=r.nonce, **({} if delta else {"version_info": r.version_info}),
               **(kw if delta else {"resource_names": ["meshforge_outbound"]} if r.type_url == ROUTE else {}))

    def clusters(r):  # the clusters the proxy holds after this CDS response
        got = {x.name for x in r.resources} if delta else set(names_of(r))
        return (held | got) - set(r.removed_resources) if delta else got

    held: set[str] = set()
    c.send(node=node("web.shop"), type_url=CLUSTER, **sub([]))
    r = c.recv()
    held = clusters(r)
    ack(r)
    c.send(type_url=ROUTE, **sub(["meshforge_outbound"]))
    r = c.recv()
    assert r.type_url == ROUTE
    ack(r)
    assert c.nothing()
    generation = server.metric("meshforge_snapshot_generation")
    (server.dir / "pr-2.yaml").write_text(sandbox("pr-2"))
    r = c.recv()
    assert r.type_url == CLUSTER and eds_name("pr-2") in clusters(r)
    held = clusters(r)
    (server.dir / "pr-1.yaml").unlink()
    wait_until(lambda: server.metric("meshforge_snapshot_generation") >= generation + 2, what="pr-1 deleted")
    ack(r)  # the ACK of the CDS that added pr-2 arrives after pr-1 is gone from the specs
    routes_without_pr1_acked = False
    seen = []
    for _ in range(6):
        try:
            r = c.recv(1.0)
        except Exception:  # noqa: BLE001 - queue.Empty: the exchange is over
            break
        seen.append(r.type_url)
        if r.type_url == CLUSTER:
            held = clusters(r)
            if eds_name("pr-1") not in held:
                assert routes_without_pr1_acked, f"pr-1's cluster removed before routes stopped using it: {seen}"
        elif r.type_url == ROUTE:
            body = r.resources[0].resource.value if delta else r.resources[0].value
            assert eds_name("pr-1").encode() not in body
        ack(r)
        if r.type_url == ROUTE:
            routes_without_pr1_acked = True
    assert eds_name("pr-1") not in held and eds_name("pr-2") in held, seen


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_routes_name_a_new_cluster_only_after_its_endpoints_are_sent(server, client, delta):
    """A new EDS cluster warms until its endpoints arrive; a route naming it before then answers 503. So
    after the CDS ACK the server sends routes only once the proxy has asked for, and been sent, the new
    cluster's endpoints (Envoy asks right after accepting the cluster)."""
    c = client(delta=delta)
    names = [eds_name(), eds_name("pr-1")]

    def ack(r, eds_names=None):
        if delta:
            c.send(type_url=r.type_url, response_nonce=r.nonce, delta=True)
        else:
            extra = ({"resource_names": eds_names or names} if r.type_url == ENDPOINT else
                     {"resource_names": ["meshforge_outbound"]} if r.type_url == ROUTE else {})
            c.send(type_url=r.type_url, version_info=r.version_info, response_nonce=r.nonce, **extra)

    def body(r):
        return b"".join(x.resource.value if delta else x.value for x in r.resources)

    sub = (lambda ns: {"resource_names_subscribe": ns}) if delta else (lambda ns: {"resource_names": ns})
    c.send(node=node("web.shop"), type_url=CLUSTER, **sub([]))
    ack(c.recv())
    c.send(type_url=ENDPOINT, **sub(names))
    ack(c.recv())
    c.send(type_url=ROUTE, **sub(["meshforge_outbound"]))
    r = c.recv()
    assert r.type_url == ROUTE
    ack(r)
    assert c.nothing()
    (server.dir / "pr-2.yaml").write_text(sandbox("pr-2"))
    r = c.recv()
    assert r.type_url == CLUSTER and eds_name("pr-2").encode() in body(r)
    ack(r)  # the cluster is accepted (warming); its endpoints are not asked for yet
    seen = []  # whatever comes now must not route to the warming cluster
    for _ in range(4):
        try:
            r = c.recv(0.6)
        except Exception:  # noqa: BLE001 - queue.Empty: nothing more
            break
        seen.append(r)
    assert not [x for x in seen if x.type_url == ROUTE and eds_name("pr-2").encode() in body(x)]
    # Envoy now asks for the new cluster's endpoints: they come, then the routes that name it
    if delta:
        for x in seen:
            ack(x)
        c.send(type_url=ENDPOINT, resource_names_subscribe=[eds_name("pr-2")])
    else:
        c.send(type_url=ENDPOINT, resource_names=names + [eds_name("pr-2")], version_info="",
               response_nonce=next((x.nonce for x in seen if x.type_url == ENDPOINT), ""))
    order = []
    for _ in range(4):
        r = c.recv(2.0)
        order.append(r.type_url)
        ack(r, names + [eds_name("pr-2")])
        if r.type_url == ROUTE:
            assert eds_name("pr-2").encode() in body(r)
            break
    assert order.index(ENDPOINT) < order.index(ROUTE), order


def test_subscription_keeps_the_wildcard_apart_from_names():
    from meshforge.server.ads import Subscription

    legacy = Subscription.delta([], may_be_wildcard=True)
    assert legacy.wildcard and legacy.legacy and legacy.names == set()
    legacy.update(["a"], [])  # names without "*" end the legacy wildcard
    assert not legacy.wildcard and legacy.names == {"a"}
    both = Subscription.delta(["*", "a"], may_be_wildcard=True)
    both.update(["b"], [])  # names asked for under the wildcard are kept ...
    assert both.wildcard and both.names == {"a", "b"}
    both.update([], ["*"])  # ... and remain when the wildcard goes
    assert not both.wildcard and both.names == {"a", "b"}
    both.update(["*"], ["a"])
    assert both.wildcard and both.names == {"b"}
    assert not Subscription.delta([], may_be_wildcard=False).wildcard  # RDS, EDS: nothing asked for
    assert Subscription.sotw([], True).wildcard and not Subscription.sotw(["x"], True).wildcard
    assert Subscription.sotw(["*", "x"], True).key() == Subscription.sotw([], True).key()


def test_delta_names_subscribed_under_the_wildcard_survive_unsubscribing_it(server, client):
    c = client(delta=True)
    c.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=["*", eds_name("pr-1")])
    r = c.recv()
    assert sorted(x.name for x in r.resources) == sorted([eds_name(), eds_name("pr-1")])
    c.send(type_url=CLUSTER, response_nonce=r.nonce, resource_names_subscribe=[])  # ACK
    c.send(type_url=CLUSTER, resource_names_unsubscribe=["*"])
    r2 = c.recv()
    assert list(r2.removed_resources) == [eds_name()]  # the one asked for by name stays
    assert all(x.name != eds_name("pr-1") for x in r2.resources)
