"""server/callbacks: what the ADS streams report at each event (metrics, log lines, authorisation), seen through a
recording Callbacks in process (tests/ads_harness.py). The protocol itself is test_ads.py's."""

from __future__ import annotations

import logging

from google.rpc import status_pb2

from meshforge.server.ads import StreamError
from meshforge.server.callbacks import Callbacks

from .ads_harness import Mesh
from .serve_harness import CLUSTER, LISTENER, api_sandbox, node, protocol_specs


class Recording(Callbacks):
    """Callbacks that also note each event (the real ones still run: metrics and logs are checked too)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.events: list[tuple] = []

    def identified(self, kind, peer, node, port, known):
        self.events.append(("identified", kind, node.cluster, known))
        super().identified(kind, peer, node, port, known)

    def pushed(self, type_url, published_at):
        self.events.append(("pushed", type_url, published_at is not None))
        super().pushed(type_url, published_at)

    def nacked(self, node_id, node, type_url, error, first):
        self.events.append(("nacked", node, type_url, first))
        super().nacked(node_id, node, type_url, error, first)

    def recovered(self, node, type_url):
        self.events.append(("recovered", node, type_url))
        super().recovered(node, type_url)


def test_a_stream_reports_who_it_is_what_it_pushed_and_each_rejection_once(tmp_path, caplog):
    mesh = Mesh(protocol_specs(tmp_path), callbacks=Recording)
    cb = mesh.ads.callbacks
    c = mesh.client()
    with caplog.at_level(logging.INFO, logger="meshforge.ads"):
        c.send(node=node("web.shop"), type_url=CLUSTER)
    r1 = c.recv()
    assert cb.events == [("identified", "sotw", "web.shop", True), ("pushed", CLUSTER, False)]
    assert "sotw stream from ipv4:127.0.0.1:40000: node" in caplog.text
    rejected = {"node": "web.shop", "type": "CDS"}
    for _ in range(2):  # rejected twice in a row: counted as NACKs twice, as a rejecting proxy once
        c.send(node=node("web.shop"), type_url=CLUSTER, response_nonce=r1.nonce, version_info="",
               error_detail=status_pb2.Status(code=3, message="cluster rejected by test"))
    assert [e for e in cb.events if e[0] == "nacked"] == [("nacked", "web.shop", CLUSTER, True),
                                                          ("nacked", "web.shop", CLUSTER, False)]
    assert mesh.metric("meshforge_xds_nacks_total", {"type": "CDS"}) == 2
    assert mesh.metric("meshforge_proxy_config_rejected", rejected) == 1
    cb.events.clear()
    mesh.write("pr-2.yaml", api_sandbox("pr-2"))  # a new snapshot: its push says when the snapshot was published
    assert cb.events == [("pushed", CLUSTER, True)]
    c.send(node=node("web.shop"), type_url=CLUSTER, response_nonce=c.recv().nonce, version_info="x")  # ACK
    assert ("recovered", "web.shop", CLUSTER) in cb.events and mesh.metric("meshforge_proxy_config_rejected", rejected) == 0
    mesh.close()


def test_an_unknown_node_is_reported_as_one_and_labelled_unknown(tmp_path, caplog):
    mesh = Mesh(protocol_specs(tmp_path), callbacks=Recording)
    c = mesh.client()
    with caplog.at_level(logging.WARNING, logger="meshforge.ads"):
        c.send(node=node("nosuch.shop"), type_url=LISTENER)
    assert mesh.ads.callbacks.events[0] == ("identified", "sotw", "nosuch.shop", False)
    assert "names no known service" in caplog.text
    assert mesh.ads.callbacks.node_label("nosuch.shop") == "unknown"
    assert mesh.ads.callbacks.node_label("web.shop") == "web.shop"
    mesh.close()


def test_authorisation_is_asked_before_the_stream_takes_the_node(tmp_path):
    asked = []

    def authorize(stream, n):
        asked.append(n.cluster)
        raise StreamError(7, f"{n.cluster} is not yours")  # PERMISSION_DENIED

    mesh = Mesh(protocol_specs(tmp_path), authorize=authorize, callbacks=Recording)
    c = mesh.client()
    c.send(node=node("web.shop"), type_url=CLUSTER)
    assert asked == ["web.shop"] and c.error is not None and "not yours" in c.error.message
    assert c.nothing() and mesh.ads.callbacks.events == [] and c.stream.node == ""
    mesh.close()
