"""server/ads: the xDS protocol and the push order (make-before-break), in process (tests/ads_harness.py): each
request handled to completion, each spec change published and pushed before the next line, so "nothing was sent"
is checked, not waited for. End-to-end versions over gRPC against a real serve are in test_ads_protocol.py."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from google.rpc import status_pb2

from .ads_harness import Mesh
from .serve_harness import CLUSTER, ENDPOINT, LISTENER, ROUTE, SPEC, api_sandbox, eds_name, node, protocol_specs


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(protocol_specs(tmp_path))
    yield m
    m.close()


def names_of(resp) -> list[str]:
    return sorted(cluster_pb2.Cluster.FromString(a.value).name for a in resp.resources)


def test_sotw_ack_nack_and_a_new_snapshot(mesh):
    c = mesh.client()
    c.send(node=node("web.shop"), type_url=CLUSTER)
    r1 = c.recv()
    assert r1.type_url == CLUSTER and r1.nonce and r1.version_info and c.nothing()
    assert names_of(r1) == sorted([eds_name(), eds_name("pr-1")])
    c.send(type_url=CLUSTER, version_info=r1.version_info, response_nonce=r1.nonce)  # ACK
    assert c.nothing()
    c.send(type_url=CLUSTER, version_info="", response_nonce=r1.nonce,
           error_detail=status_pb2.Status(code=3, message="cluster rejected by test"))  # NACK
    assert c.nothing()  # not answered by resending the same configuration
    assert mesh.metric("meshforge_xds_nacks_total", {"type": "CDS"}) == 1
    assert c.stream.rejected == {CLUSTER: "cluster rejected by test"}
    assert mesh.metric("meshforge_proxy_config_rejected", {"node": "web.shop", "type": "CDS"}) == 1
    mesh.write("pr-2.yaml", api_sandbox("pr-2"))
    r2 = c.recv()
    assert r2.version_info != r1.version_info and eds_name("pr-2") in names_of(r2)
    c.send(type_url=CLUSTER, version_info=r2.version_info, response_nonce=r2.nonce)  # accepted: no longer rejected
    assert c.stream.rejected == {} and mesh.metric("meshforge_proxy_config_rejected", {"node": "web.shop",
                                                                                       "type": "CDS"}) == 0


def test_sotw_a_stale_nonce_is_ignored(mesh):
    c = mesh.client()
    c.send(node=node("web.shop"), type_url=ENDPOINT, resource_names=[eds_name("pr-1")])
    r1 = c.recv()
    c.send(type_url=ENDPOINT, resource_names=[eds_name("pr-1")], response_nonce=r1.nonce, version_info=r1.version_info)
    mesh.write("pr-1.yaml", api_sandbox("pr-1", port=11))  # endpoints change: a new EDS response
    r2 = c.recv()
    assert r2.nonce != r1.nonce
    # a request carrying the superseded nonce (and another subscription) is stale: ignored
    c.send(type_url=ENDPOINT, resource_names=[eds_name()], response_nonce=r1.nonce, version_info=r1.version_info)
    assert c.nothing()
    # the same change with the current nonce is honoured
    c.send(type_url=ENDPOINT, resource_names=[eds_name()], response_nonce=r2.nonce, version_info=r2.version_info)
    r3 = c.recv()  # the baseline's static endpoints are served by EDS too
    assert [a.value for a in r3.resources] and eds_name().encode() in r3.resources[0].value


def test_sotw_a_name_asked_for_before_it_exists_is_sent_when_it_appears(mesh):
    c = mesh.client()
    c.send(node=node("web.shop"), type_url=ENDPOINT, resource_names=[eds_name("pr-9")])
    r1 = c.recv()
    assert len(r1.resources) == 0
    c.send(type_url=ENDPOINT, resource_names=[eds_name("pr-9")], response_nonce=r1.nonce, version_info=r1.version_info)
    mesh.write("pr-9.yaml", api_sandbox("pr-9"))
    pushed = [r for r in c.all() if r.type_url == ENDPOINT]
    assert len(pushed) == 1 and len(pushed[0].resources) == 1 and pushed[0].version_info != r1.version_info


def test_an_unknown_node_gets_an_empty_valid_configuration(mesh, caplog):
    c = mesh.client()
    for t in (CLUSTER, LISTENER):
        c.send(node=node("ghost.nowhere"), type_url=t)
        r = c.recv()
        assert r.type_url == t and len(r.resources) == 0
    assert "names no known service" in caplog.text and "ghost.nowhere" in caplog.text


def test_bad_node_metadata_ends_the_stream_with_invalid_argument(mesh):
    import grpc
    from google.protobuf import struct_pb2

    n = node("web.shop")
    n.metadata.fields["meshforge.outbound_port"].CopyFrom(struct_pb2.Value(string_value="70000"))
    c = mesh.client()
    c.send(node=n, type_url=CLUSTER)
    assert c.error is not None and c.error.code == grpc.StatusCode.INVALID_ARGUMENT and c.nothing()


def test_delta_wildcard_ack_unsubscribe_and_nack(mesh):
    c = mesh.client(delta=True)
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
    mesh.write("pr-1.yaml", api_sandbox("pr-1", port=12))  # changes only what we unsubscribed from
    assert c.nothing()
    mesh.write("pr-3.yaml", api_sandbox("pr-3"))  # a new cluster: CDS delta carries just it
    r2 = c.recv()
    assert r2.type_url == CLUSTER and [r.name for r in r2.resources] == [eds_name("pr-3")] and c.nothing()
    c.send(type_url=CLUSTER, response_nonce=r2.nonce, delta=True,
           error_detail=status_pb2.Status(code=3, message="nope"))
    assert c.nothing() and mesh.metric("meshforge_xds_nacks_total", {"type": "CDS"}) == 1
    mesh.unlink("pr-3.yaml")
    r3 = c.recv()
    assert r3.removed_resources == [eds_name("pr-3")] and not r3.resources


def test_delta_reconnect_with_initial_resource_versions(mesh):
    c = mesh.client(delta=True)
    c.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[])
    have = {r.name: r.version for r in c.recv().resources}
    c.close()
    c2 = mesh.client(delta=True)  # knowing everything: nothing to send
    c2.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[], initial_resource_versions=have)
    assert c2.nothing()
    stale = dict(have)  # one stale version and one resource that no longer exists
    stale[eds_name("pr-1")] = "0000000000000000"
    stale[eds_name("gone")] = "1111111111111111"
    c3 = mesh.client(delta=True)
    c3.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=[], initial_resource_versions=stale)
    r3 = c3.recv()
    assert [r.name for r in r3.resources] == [eds_name("pr-1")] and r3.removed_resources == [eds_name("gone")]


def test_delta_names_subscribed_under_the_wildcard_survive_unsubscribing_it(mesh):
    c = mesh.client(delta=True)
    c.send(node=node("web.shop"), type_url=CLUSTER, resource_names_subscribe=["*", eds_name("pr-1")])
    r = c.recv()
    assert sorted(x.name for x in r.resources) == sorted([eds_name(), eds_name("pr-1")])
    c.send(type_url=CLUSTER, response_nonce=r.nonce, resource_names_subscribe=[])  # ACK
    c.send(type_url=CLUSTER, resource_names_unsubscribe=["*"])
    r2 = c.recv()
    assert list(r2.removed_resources) == [eds_name()]  # the one asked for by name stays
    assert all(x.name != eds_name("pr-1") for x in r2.resources)


def test_routes_and_listeners_by_name_and_wildcard(mesh):
    c = mesh.client()
    c.send(node=node("web.shop", port=15123), type_url=LISTENER)
    listener = listener_pb2.Listener.FromString(c.recv().resources[0].value)
    assert listener.name == "meshforge_outbound" and listener.address.socket_address.port_value == 15123
    c.send(type_url=ROUTE, resource_names=["meshforge_outbound"])
    rr = c.recv()
    assert rr.type_url == ROUTE and len(rr.resources) == 1


def test_only_streams_whose_resources_changed_are_pushed(mesh):
    web, lone = mesh.client(), mesh.client()
    for c, n in ((web, "web.shop"), (lone, "lone.shop")):
        c.send(node=node(n), type_url=CLUSTER)
        r = c.recv()
        c.send(type_url=CLUSTER, version_info=r.version_info, response_nonce=r.nonce)
        assert (len(r.resources) == 0) == (n == "lone.shop")
    pushes = mesh.metric("meshforge_xds_pushes_total", {"type": "CDS"})
    mesh.write("pr-5.yaml", api_sandbox("pr-5"))
    assert eds_name("pr-5") in names_of(web.recv())
    assert lone.nothing()  # its scope (dependsOn: []) holds nothing that changed
    assert mesh.metric("meshforge_xds_pushes_total", {"type": "CDS"}) == pushes + 1


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_nothing_is_answered_until_the_specs_are_valid(tmp_path, delta):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC.replace("name: api\n", "name: api\n    bogus: 1\n", 1))
    mesh = Mesh(d)
    assert mesh.errors and "unknown field 'bogus'" in mesh.errors[0]
    c = mesh.client(delta)
    c.send(node=node("web.shop"), type_url=CLUSTER, **({"resource_names_subscribe": []} if delta else {}))
    assert c.nothing()  # an empty answer would wipe the routes of a proxy that reconnects
    mesh.write("baseline.yaml", SPEC)
    r = c.recv()
    assert len(r.resources) == 1


def _acker(c, delta: bool):
    def ack(r, eds_names=None):
        if delta:
            c.send(type_url=r.type_url, response_nonce=r.nonce, delta=True)
        else:
            extra = ({"resource_names": eds_names} if r.type_url == ENDPOINT and eds_names else
                     {"resource_names": ["meshforge_outbound"]} if r.type_url == ROUTE else {})
            c.send(type_url=r.type_url, version_info=r.version_info, response_nonce=r.nonce, **extra)
    return ack


def _body(r, delta: bool) -> bytes:
    return b"".join(x.resource.value if delta else x.value for x in r.resources)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_a_cluster_still_routed_to_is_removed_only_after_routes_that_no_longer_use_it_are_acked(mesh, delta):
    """pr-2 is added (CDS sent, not yet ACKed), then pr-1 deleted. When the CDS ACK comes, pr-1's cluster stays
    until the proxy has ACKed routes that no longer send traffic to it: removing it first turns pr-1's
    requests in flight into 503s. The exact order: CDS (+pr-2, pr-1 still in it), its ACK, RDS without pr-1,
    its ACK, then CDS without pr-1."""
    c = mesh.client(delta=delta)
    ack = _acker(c, delta)
    sub = (lambda names: {"resource_names_subscribe": names}) if delta else (lambda names: {"resource_names": names})
    held: set[str] = set()

    def clusters(r):  # the clusters the proxy holds after this CDS response
        got = {x.name for x in r.resources} if delta else set(names_of(r))
        return (held | got) - set(r.removed_resources) if delta else got

    c.send(node=node("web.shop"), type_url=CLUSTER, **sub([]))
    r = c.recv()
    held = clusters(r)
    ack(r)
    c.send(type_url=ROUTE, **sub(["meshforge_outbound"]))
    ack(c.recv())
    assert c.nothing()
    mesh.write("pr-2.yaml", api_sandbox("pr-2"))
    (r,) = c.all()
    assert r.type_url == CLUSTER and eds_name("pr-2") in clusters(r)
    held = clusters(r)
    mesh.unlink("pr-1.yaml")
    assert c.nothing()  # the CDS that added pr-2 is not ACKed yet: nothing else goes out
    assert eds_name("pr-1") in held  # the CDS that added pr-2 was built before pr-1 went: it is still there
    ack(r)
    (r,) = c.all()
    assert r.type_url == ROUTE and eds_name("pr-1").encode() not in _body(r, delta)  # routes first ...
    assert eds_name("pr-1") in held
    ack(r)
    (r,) = c.all()
    assert r.type_url == CLUSTER
    held = clusters(r)
    assert eds_name("pr-1") not in held and eds_name("pr-2") in held


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_routes_name_a_new_cluster_only_after_its_endpoints_are_sent(mesh, delta):
    """A new EDS cluster warms until its endpoints arrive; a route naming it before then answers 503. After the
    CDS ACK the server sends routes only once the proxy has asked for, and been sent, the new cluster's
    endpoints (Envoy asks right after accepting the cluster)."""
    c = mesh.client(delta=delta)
    names = [eds_name(), eds_name("pr-1")]
    ack = _acker(c, delta)
    sub = (lambda ns: {"resource_names_subscribe": ns}) if delta else (lambda ns: {"resource_names": ns})
    c.send(node=node("web.shop"), type_url=CLUSTER, **sub([]))
    ack(c.recv())
    c.send(type_url=ENDPOINT, **sub(names))
    ack(c.recv(), names)
    c.send(type_url=ROUTE, **sub(["meshforge_outbound"]))
    ack(c.recv())
    assert c.nothing()
    mesh.write("pr-2.yaml", api_sandbox("pr-2"))
    (r,) = c.all()
    assert r.type_url == CLUSTER and eds_name("pr-2").encode() in _body(r, delta)
    ack(r)  # the cluster is accepted (warming); its endpoints are not asked for yet
    seen = c.all()
    assert not [x for x in seen if x.type_url == ROUTE], [x.type_url for x in seen]  # routes wait for them
    for x in seen:
        ack(x, names)
    if delta:
        c.send(type_url=ENDPOINT, resource_names_subscribe=[eds_name("pr-2")])
    else:
        c.send(type_url=ENDPOINT, resource_names=names + [eds_name("pr-2")], version_info="",
               response_nonce=c.stream.types[ENDPOINT].nonce)
    sent = c.all()  # its endpoints, then at once (one stream: Envoy applies them in order) the routes naming it
    assert [r.type_url for r in sent] == [ENDPOINT, ROUTE], [r.type_url for r in sent]
    assert eds_name("pr-2").encode() in _body(sent[0], delta) and eds_name("pr-2").encode() in _body(sent[1], delta)


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


def test_mailbox_is_first_in_first_out_and_wakes_its_consumer():
    import asyncio

    from meshforge.server.ads import Mailbox

    async def main():
        box = Mailbox()
        assert box.empty()
        getter = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)  # the consumer waits
        box.put_nowait(1)
        await box.put(2)
        assert await getter == 1 and not box.empty()
        assert box.get_nowait() == 2 and box.empty()
        with pytest.raises(asyncio.QueueEmpty):
            box.get_nowait()
        waiting = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        waiting.cancel()  # a cancelled wait loses nothing
        await asyncio.gather(waiting, return_exceptions=True)
        box.put_nowait(3)
        assert await box.get() == 3

    asyncio.run(main())


class _AbortError(Exception):
    pass


class _NeverTaken:
    """A gRPC servicer context whose client takes no response: every write waits for ever."""

    def __init__(self):
        self.written, self.aborted, self.done_callbacks = 0, None, []

    def peer(self):
        return "ipv4:127.0.0.1:40001"

    async def write(self, resp):
        self.written += 1
        import asyncio
        await asyncio.get_running_loop().create_future()

    async def abort(self, code, details):
        self.aborted = (code, details)
        raise _AbortError(details)

    def add_done_callback(self, cb):
        self.done_callbacks.append(cb)


def test_a_response_its_client_does_not_take_ends_the_stream_after_the_stall_timeout(mesh):
    """One watchdog for every stream's writes (no timer per response): the stream whose write waits longer
    than `stall_seconds` ends with RESOURCE_EXHAUSTED, counted as stalled; its bytes stay counted as pending
    until the RPC is done; a stream whose client takes its responses is left alone."""
    import asyncio

    import grpc
    from envoy.service.discovery.v3 import discovery_pb2

    from meshforge.server.ads import AdsServer, Limits, SotwStream

    ads = AdsServer(mesh.cache, mesh.metrics, limits=Limits(stall_seconds=0.2))
    ctx = _NeverTaken()

    async def requests():
        yield discovery_pb2.DiscoveryRequest(node=node("web.shop"), type_url=CLUSTER)
        await asyncio.get_running_loop().create_future()  # the client sends nothing more

    async def main():
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(_AbortError):  # (a TimeoutError here: nothing ended the stream)
            await asyncio.wait_for(ads._serve(SotwStream(ads, ctx.peer()), requests(), ctx), 5)
        return asyncio.get_running_loop().time() - t0

    took = asyncio.run(main())
    assert ctx.written == 1 and ctx.aborted[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "was not taken in 0.2 s" in ctx.aborted[1] and ads.ended["stalled"] == 1
    assert 0.2 <= took < 2.0
    assert ads.pending_bytes > 0 and not ads._writing  # held until the RPC is done ...
    for cb in ctx.done_callbacks:
        cb(None)
    assert ads.pending_bytes == 0  # ... then released
