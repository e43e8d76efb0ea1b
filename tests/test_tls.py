"""mTLS for xDS: real Envoys over mutual TLS get their own service's configuration and nothing else."""

from __future__ import annotations

import json
import ssl

import grpc
import pytest

from meshforge.emit.xds.bootstrap import XdsTls
from meshforge.server.tls import may_ask_for

from .certs import CA
from .serve_harness import CLUSTER, SPEC, RawClient, Server, Sidecar, node, wait_until


def test_identity_rule():
    assert may_ask_for("web.shop", {"web.shop"})
    assert may_ask_for("web.shop", {"spiffe://cluster.local/ns/shop/sa/web"})
    assert not may_ask_for("web.shop", {"api.shop", "spiffe://cluster.local/ns/shop/sa/api"})
    assert not may_ask_for("web.shop", {"spiffe://cluster.local/ns/shop/sa/web/x", "web.shop.evil"})
    assert not may_ask_for("web.shop", set())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA(), CA("not-the-ca")
    (d / "ca.crt").write_bytes(ca.pem())
    files = {"ca": d / "ca.crt",
             "server": ca.write(d, "server", "meshforge", dns=["localhost"], ips=["127.0.0.1"]),
             "web": ca.write(d, "web", "web", dns=["web.shop"]),
             "api": ca.write(d, "api", "api", uris=["spiffe://cluster.local/ns/shop/sa/api"]),
             "forged": other.write(d, "forged", "web", dns=["web.shop"]),
             "operator": ca.write(d, "operator", "oncall", uris=["spiffe://cluster.local/ns/ops/sa/oncall"])}
    return files


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("specs")
    (d / "baseline.yaml").write_text(SPEC)
    admin = ssl.create_default_context(cafile=str(pki["ca"]))
    cert, key = pki["server"]
    with Server([d], args=("--tls-cert-file", cert, "--tls-key-file", key, "--client-ca-file", pki["ca"],
                           "--admin-operator", "spiffe://cluster.local/ns/ops/sa/oncall"),
                admin_ssl=admin) as s:
        yield s


def creds(pki, who: str | None) -> grpc.ChannelCredentials:
    ca = pki["ca"].read_bytes()
    if who is None:
        return grpc.ssl_channel_credentials(ca)
    cert, key = pki[who]
    return grpc.ssl_channel_credentials(ca, key.read_bytes(), cert.read_bytes())


def first_answer(server, pki, who, cluster):
    c = RawClient(server.xds_port, credentials=creds(pki, who))
    try:
        c.send(node=node(cluster), type_url=CLUSTER)
        r = c.recv(timeout=10)
        return r, c.error
    finally:
        c.close()


def test_a_proxy_gets_its_own_service_and_only_that(server, pki):
    r, _ = first_answer(server, pki, "web", "web.shop")
    assert r is not None and r.type_url == CLUSTER
    r, _ = first_answer(server, pki, "api", "api.shop")  # a SPIFFE identity
    assert r is not None and r.type_url == CLUSTER
    r, err = first_answer(server, pki, "api", "web.shop")
    assert r is None and err.code() == grpc.StatusCode.PERMISSION_DENIED and "web.shop" in err.details()


@pytest.mark.parametrize("who", [None, "forged"])
def test_no_certificate_or_another_cas_gets_nothing(server, pki, who):
    r, err = first_answer(server, pki, who, "web.shop")
    assert r is None and err is not None and err.code() == grpc.StatusCode.UNAVAILABLE


def test_real_envoys_over_mutual_tls(server, pki):
    web = XdsTls(str(pki["ca"]), str(pki["web"][0]), str(pki["web"][1]))
    impostor = Sidecar("web.shop", server, tls=XdsTls(str(pki["ca"]), str(pki["api"][0]), str(pki["api"][1])),
                       node_id="impostor")
    try:
        with Sidecar("web.shop", server, tls=web) as good:
            impostor.start(wait=False)
            wait_until(lambda: "listener/meshforge_outbound" in good.dynamic_versions(), 20, what="config over mTLS")
            assert any("outbound|80||api.shop" in k for k in good.dynamic_versions())
            wait_until(lambda: "closed: 7, the client certificate" in impostor.log(), 20, what="impostor refused")
            assert impostor.dynamic_versions() == {}
    finally:
        impostor.stop()


def test_admin_debug_config_needs_the_nodes_certificate(server, pki):
    assert server.get("/healthz") == (200, "ok\n")  # probes need no certificate
    assert server.get("/debug/config?node=web.shop")[0] == 403
    as_web = ssl.create_default_context(cafile=str(pki["ca"]))
    as_web.load_cert_chain(*map(str, pki["web"]))
    status, body = server.get("/debug/config?node=web.shop", context=as_web)
    assert status == 200 and json.loads(body)["node"] == "web.shop"
    assert server.get("/debug/config?node=api.shop", context=as_web)[0] == 403


def test_the_edge_node_needs_a_certificate_naming_the_edge():
    assert may_ask_for("meshforge-edge", {"meshforge-edge"})
    assert may_ask_for("meshforge-edge", {"spiffe://cluster.local/ns/ingress/sa/meshforge-edge"})
    assert not may_ask_for("meshforge-edge", {"web.shop", "spiffe://cluster.local/ns/shop/sa/web"})


def test_access_logs_arrive_over_mutual_tls_and_the_dashboard_needs_a_client_certificate(server, pki):
    from .envoy_harness import http_get

    web = XdsTls(str(pki["ca"]), str(pki["web"][0]), str(pki["web"][1]))
    as_web, as_operator = (ssl.create_default_context(cafile=str(pki["ca"])) for _ in range(2))
    as_web.load_cert_chain(*map(str, pki["web"]))
    as_operator.load_cert_chain(*map(str, pki["operator"]))
    with Sidecar("web.shop", server, tls=web) as good:
        wait_until(lambda: "listener/meshforge_outbound" in good.dynamic_versions(), 20, what="config over mTLS")
        http_get(good.outbound, "api", {"x-meshforge-routing-key": "tls-key"})  # api's endpoint refuses: 503

        def logged():
            status, body = server.get("/api/requests?key=tls-key", context=as_operator)
            return status == 200 and json.loads(body)["requests"]

        rows = wait_until(logged, 10, what="the access log over mTLS")
        assert rows[0]["node"] == "web.shop" and rows[0]["service"] == "api.shop" and rows[0]["status"] == 503
        assert rows[0]["authenticated"] is True  # its stream proved it is web.shop's proxy
    assert server.get("/api/state")[0] == 403 and server.get("/")[0] == 403  # no client certificate
    # any certificate the CA signed is not enough: a proxy's reads its own /debug/config, an operator's all
    status, body = server.get("/api/state", context=as_web)
    assert status == 403 and "--admin-operator" in body
    assert server.get("/", context=as_operator)[0] == 200
    assert server.get("/debug/config?node=web.shop", context=as_web)[0] == 200
    assert server.get("/debug/config?node=api.shop", context=as_web)[0] == 403
    assert server.get("/debug/config?node=api.shop", context=as_operator)[0] == 200
