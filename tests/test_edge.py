"""The edge on real Envoys: an edge proxy and a chain of sidecars, all configured live by `meshforge serve`.

web → cart → pay, each app behind its own sidecar, outside traffic through the edge (bootstrapped with
`meshforge bootstrap --edge`). Preview hosts reach the key's version hop by hop; keys sent from outside
`trustedSources` (the plain header in any case, the baggage member) reach only the baseline, and the
caller's other baggage members arrive intact; a trusted caller's key is honoured. The trusted source
is 127.0.0.2: the client binds it as its source address (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import http.client
import json

import pytest

from meshforge.carriers import is_key_member, key_from_baggage
from meshforge.explain import explain_url
from meshforge.pipeline import compile_paths

from .conftest import BAGGAGE_TABLE, EDGE_ONLY_ENCODINGS
from .envoy_harness import SampleApp
from .serve_harness import wait_until
from .shop_mesh import ShopMesh, chain_of
from .specs import sandbox

EDGE = """\
  edge:
    service: web
    hosts: [shop.example.test]
    previewDomain: preview.example.test
    trustedSources: [127.0.0.2/32]
"""


def edge_get(port: int, host: str, headers: list[tuple[str, str]] = (), source: str = "127.0.0.1") -> dict:
    """GET / from outside: to the edge at 127.0.0.1:port, with `host`, from `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.putrequest("GET", "/", skip_host=True)
        conn.putheader("host", host)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            return {"status": resp.status, "body": data.decode(errors="replace")}
        return json.loads(data)
    finally:
        conn.close()


def otel_baggage(values: list[str]) -> str | None:
    """The baggage an OpenTelemetry-instrumented service sends on: its propagator's extract, then inject."""
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    propagator = W3CBaggagePropagator()
    out: dict[str, str] = {}
    propagator.inject(out, propagator.extract({"baggage": ",".join(values)}))
    return out.get("baggage")


def hops(answer: dict) -> list[dict]:
    out = []
    while answer:
        out.append(answer)
        answer = answer.get("next")
    return out


chain = chain_of


class EdgeMesh(ShopMesh):
    """web → cart → pay behind sidecars and the edge; pay-pr-2 forks pay to pay-v2, web-pr-3 web to web-v2; cart-v2
    is there for a test's own sandbox."""

    def __init__(self, tmp_path):
        super().__init__(tmp_path, {"pay-v2": ("pay", {}), "cart-v2": ("cart", {}), "web-v2": ("web", {})},
                         {"pay-pr-2": "pay-v2", "web-pr-3": "web-v2"},
                         [("web", "web-v1"), ("web", "web-v2"), ("cart", "cart-v1"), ("cart", "cart-v2")],
                         edge_spec=EDGE, edge=True, wait=EdgeMesh.configured)
        self.port, self.web, self.cart2 = self.edge_port, self.apps["web-v1"], self.apps["cart-v2"]

    def configured(self):
        wait_until(lambda: chain(self.get("pay-pr-2.preview.example.test")) == ["web-v1", "cart-v1", "pay-v2"], 20,
                   what="edge and sidecars configured")

    def get(self, host: str, headers=(), source: str = "127.0.0.1") -> dict:
        return edge_get(self.edge_port, host, list(headers), source)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = EdgeMesh(tmp_path_factory.mktemp("edge"))
    try:
        yield m
    finally:
        m.stack.close()


def test_public_host_reaches_the_baseline(mesh):
    assert chain(mesh.get("shop.example.test")) == ["web-v1", "cart-v1", "pay-v1"]


def test_preview_host_reaches_the_keys_version_hop_by_hop(mesh):
    answer = mesh.get("pay-pr-2.preview.example.test")
    assert chain(answer) == ["web-v1", "cart-v1", "pay-v2"]
    # every hop received the key: as the header from the edge, then in baggage as services pass it on
    assert [h["baggage"] for h in hops(answer)] == [["meshforge-routing-key=pay-pr-2"]] * 3
    assert answer["key"] == "pay-pr-2"
    # the key's fork of the edge service itself is reached at the first hop
    assert chain(mesh.get("web-pr-3.preview.example.test")) == ["web-v2", "cart-v1", "pay-v1"]


def test_preview_host_in_any_case_and_with_a_port(mesh):
    assert chain(mesh.get("Pay-PR-2.Preview.Example.Test:8443")) == ["web-v1", "cart-v1", "pay-v2"]


def test_preview_key_is_appended_after_the_callers_other_baggage_members(mesh):
    answer = mesh.get("pay-pr-2.preview.example.test", [("baggage", "userId=7;p=1, tenant=acme")])
    assert chain(answer) == ["web-v1", "cart-v1", "pay-v2"]
    assert hops(answer)[-1]["baggage"] == ["userId=7;p=1, tenant=acme,meshforge-routing-key=pay-pr-2"]


def test_preview_host_wins_over_a_key_the_caller_sent(mesh):
    answer = mesh.get("web-pr-3.preview.example.test", [("baggage", "meshforge-routing-key=pay-pr-2"),
                                                        ("x-meshforge-routing-key", "pay-pr-2")])
    assert chain(answer) == ["web-v2", "cart-v1", "pay-v1"]
    assert hops(answer)[-1]["baggage"] == ["meshforge-routing-key=web-pr-3"]


def test_unknown_preview_host_gets_404_that_says_so(mesh):
    answer = mesh.get("nobody-here.preview.example.test")
    assert answer["status"] == 404
    assert "no active sandbox or route group" in answer["body"]
    other = mesh.get("elsewhere.example.org")  # not a host the edge serves: a 404 that names the ones it does
    assert other["status"] == 404 and "preview.example.test" in other["body"]


@pytest.mark.parametrize("forged", [
    [("x-meshforge-routing-key", "pay-pr-2")],
    [("X-MESHFORGE-ROUTING-KEY", "pay-pr-2")],
    [("X-Meshforge-Routing-Key", "web-pr-3")],
    [("x-meshforge-routing-key", "pay-pr-2"), ("x-meshforge-routing-key", "web-pr-3")],
    [("baggage", "meshforge-routing-key=pay-pr-2")],
    [("baggage", "meshforge-routing-key=web-pr-3")],
    [("Baggage", " meshforge-routing-key = pay-pr-2 ;p=1")],
])
def test_forged_key_from_outside_reaches_only_the_baseline(mesh, forged):
    answer = mesh.get("shop.example.test", forged)
    assert chain(answer) == ["web-v1", "cart-v1", "pay-v1"]
    assert all(h["key"] is None for h in hops(answer))
    assert all(h["baggage"] == [] for h in hops(answer))


# the table's members whose name is encoded (carrying k7x2m9), and the rarer ones only the edge patterns see
ENCODED = [vs[0] for vs, carried in BAGGAGE_TABLE if len(vs) == 1 and carried == "k7x2m9"
           and not any(m.strip(" \t").startswith("meshforge-routing-key") for m in vs[0].split(","))] + EDGE_ONLY_ENCODINGS


@pytest.mark.parametrize("member", ENCODED)
def test_an_encoded_routing_key_member_from_outside_is_removed(mesh, member):
    """With OpenTelemetry's own propagator in the chain (web passes baggage on through it: it decodes member
    names and writes them plainly), an encoded name must not get a key from outside past the edge."""
    assert key_from_baggage([member], "meshforge-routing-key") == "k7x2m9"  # it is the routing-key member
    forged = member.replace("k7x2m9", "pay-pr-2")
    mesh.web.baggage_out = otel_baggage
    try:
        answer = mesh.get("shop.example.test", [("baggage", f"userId=7,{forged}")])
    finally:
        mesh.web.baggage_out = SampleApp("x").baggage_out
    assert chain(answer) == ["web-v1", "cart-v1", "pay-v1"], forged
    others = [m for m in f"userId=7,{forged}".split(",") if not is_key_member(m, "meshforge-routing-key")]
    assert hops(answer)[0]["baggage"] == [",".join(others)]  # the caller's other members go on, as sent
    assert not any(is_key_member(m, "meshforge-routing-key") for h in hops(answer) for v in h["baggage"]
                   for m in v.split(","))
    # the same through a trusted source: the key is honoured, past OpenTelemetry's re-encoding too
    mesh.web.baggage_out = otel_baggage
    try:
        trusted = mesh.get("shop.example.test", [("baggage", f"userId=7,{forged}")], "127.0.0.2")
    finally:
        mesh.web.baggage_out = SampleApp("x").baggage_out
    assert chain(trusted) == ["web-v1", "cart-v1", "pay-v2"], forged
    assert "meshforge-routing-key=pay-pr-2" in hops(trusted)[1]["baggage"][0].split(",")  # as OpenTelemetry writes it


def test_forged_baggage_member_is_removed_and_the_others_arrive_intact(mesh):
    answer = mesh.get("shop.example.test", [("baggage", "userId=7, meshforge-routing-key=pay-pr-2;p=1, tenant=acme"),
                                            ("baggage", "region=eu,meshforge-routing-key=web-pr-3")])
    assert chain(answer) == ["web-v1", "cart-v1", "pay-v1"]
    assert [h["baggage"] for h in hops(answer)] == [["userId=7, tenant=acme,region=eu"]] * 3


def test_baggage_without_a_key_passes_untouched(mesh):
    answer = mesh.get("shop.example.test", [("baggage", "userId=7 , tenant=acme;p")])
    assert [h["baggage"] for h in hops(answer)] == [["userId=7 , tenant=acme;p"]] * 3


def test_trusted_source_keeps_its_key(mesh):
    trusted = "127.0.0.2"
    assert chain(mesh.get("shop.example.test", [("baggage", "a=1,meshforge-routing-key=pay-pr-2")], trusted)) == \
        ["web-v1", "cart-v1", "pay-v2"]
    answer = mesh.get("shop.example.test", [("x-meshforge-routing-key", "web-pr-3"),
                                            ("baggage", "meshforge-routing-key=web-pr-3")], trusted)
    assert chain(answer) == ["web-v2", "cart-v1", "pay-v1"]
    assert answer["key"] == "web-pr-3"


def test_a_new_sandbox_gets_its_preview_host_live(mesh):
    host = "cart-pr-9.preview.example.test"
    assert mesh.get(host)["status"] == 404
    (mesh.dir / "cart-pr-9.yaml").write_text(sandbox("cart-pr-9", ("cart", mesh.cart2.port)))
    try:
        wait_until(lambda: chain(mesh.get(host)) == ["web-v1", "cart-v2", "pay-v1"], 15, what="preview host live")
    finally:
        (mesh.dir / "cart-pr-9.yaml").unlink()
    wait_until(lambda: mesh.get(host).get("status") == 404, 15, what="preview host gone")


def test_explain_url_says_where_the_edge_sends_each_request(mesh):
    model, _ = compile_paths([str(mesh.dir)])
    cases = [("pay-pr-2.preview.example.test", None, None), ("web-pr-3.preview.example.test", "pay-pr-2", None),
             ("shop.example.test", "web-pr-3", None), ("shop.example.test", "web-pr-3", "127.0.0.2"),
             ("shop.example.test", "pay-pr-2", "127.0.0.2")]
    for host, key, source in cases:
        e = explain_url(model, f"http://{host}/", key, source)
        expected = [f"{h.service.split('.')[0]}-v{'2' if h.sandbox else '1'}" for h in e.hops]
        headers = [("baggage", f"meshforge-routing-key={key}")] if key else []  # what services pass on
        assert chain(mesh.get(host, headers, source or "127.0.0.1")) == expected, (host, key, source)
