"""The xDS protocol end to end: a raw gRPC client against a real `meshforge serve` (its watcher, its log, its admin
API, reconnects over real connections). The protocol's rules one request at a time are tested in process, in
test_ads.py."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.rpc import status_pb2

from meshforge.xdsapi import DEFAULT_OUTBOUND_PORT

from .serve_harness import (
    CLUSTER,
    ROUTE,
    SPEC,
    RawClient,
    Server,
    api_sandbox,
    eds_name,
    node,
    protocol_specs,
    wait_until,
)


@pytest.fixture
def server(tmp_path):
    d = protocol_specs(tmp_path)
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
    (server.dir / "pr-2.yaml").write_text(api_sandbox("pr-2"))
    r2 = c.recv()
    assert r2.version_info != r1.version_info and eds_name("pr-2") in names_of(r2)


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
    (server.dir / "pr-2.yaml").write_text(api_sandbox("pr-2"))
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
