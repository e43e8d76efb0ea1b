"""The dashboard at `GET /` of serve's admin address, rendered by a real headless Chromium (Debian's
`chromium`, which `.ci/run` installs): it shows the routing keys, forks and proxies from `/api/state`,
the forked services highlighted in the service graph, recent requests, and logs no console error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from meshforge.emit.xds.bootstrap import node_proto

from .envoy_harness import SampleApp, http_get
from .serve_harness import CLUSTER, RawClient, Server, Sidecar, wait_until

SPECS = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: shop}}
spec:
  edge: {{service: web, hosts: [shop.example.test], previewDomain: preview.example.test}}
  services:
  - {{name: web, ports: [{{name: http, port: 80}}], dependsOn: [cart, a-svc, z-svc]}}
  - {{name: cart, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: {cart}}}], dependsOn: []}}
  - {{name: a-svc, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: 9}}], dependsOn: [z-leaf]}}
  - {{name: z-svc, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: 9}}], dependsOn: [a-leaf]}}
  - {{name: a-leaf, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: 9}}], dependsOn: []}}
  - {{name: z-leaf, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: 9}}], dependsOn: []}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: cart-pr-1, namespace: shop, labels: {{feature: x}}}}
spec:
  expiresAt: "2099-01-01T00:00:00Z"
  forks: [{{service: cart, to: {{endpoints: [{{address: 127.0.0.1, port: {cart2}}}]}}}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: RouteGroup
metadata: {{name: feature-x}}
spec:
  match: {{labels: {{feature: x}}}}
"""


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, "no Chromium: apt-get install chromium (.ci/run installs it)"
    return found


class Texts(HTMLParser):
    """Text per element id, the classes of SVG groups, the graph's edges, links, markers, hidden sections."""

    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str | None] = []
        self.text: dict[str, str] = {}
        self.groups: list[str] = []
        self.edges: list[dict] = []
        self.links: list[str] = []
        self.markers: list[str] = []
        self.hidden: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.VOID:
            return
        self.stack.append(a.get("id"))
        if "hidden" in a and a.get("id"):
            self.hidden.add(a["id"])
        if tag == "g":
            self.groups.append(a.get("class") or "")
        if tag == "line" and a.get("class") == "edge":
            self.edges.append(a)
        if tag == "a":
            self.links.append(a.get("href") or "")
        if tag == "marker":
            self.markers.append(a.get("id") or "")

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            if i:
                self.text[i] = self.text.get(i, "") + data


EDGE_PORT = 8443  # the edge proxy's listener, as its node metadata says: preview links carry it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("dash") / "specs"
    d.mkdir()
    with SampleApp("cart-v1") as cart, SampleApp("cart-v2") as cart2:
        (d / "specs.yaml").write_text(SPECS.format(cart=cart.port, cart2=cart2.port))
        with Server([d]) as server, Sidecar("web.shop", server) as web:
            wait_until(lambda: http_get(web.outbound, "cart", {"baggage": "meshforge-routing-key=cart-pr-1"})
                       .get("name") == "cart-v2", 20, what="sidecar configured")
            http_get(web.outbound, "cart", {"baggage": "meshforge-routing-key=cart-pr-2"})  # a typo'd key
            wait_until(lambda: json.loads(server.get("/api/requests?key=cart-pr-1")[1])["requests"], 10,
                       what="request logged")
            wait_until(lambda: json.loads(server.get("/api/requests?key=cart-pr-2")[1])["requests"], 10,
                       what="request with the unknown key logged")
            edge = RawClient(server.xds_port)  # an edge proxy's stream: where it listens is in its metadata
            edge.send(node=node_proto("meshforge-edge", "edge-1", 0, listen=("0.0.0.0", EDGE_PORT)),
                      type_url=CLUSTER)
            edge.recv()
            server.dir = d
            try:
                yield server
            finally:
                edge.close()


def render(server, fragment: str = "") -> tuple[str, str]:
    r = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                        "--virtual-time-budget=4000", "--enable-logging=stderr", "--v=0",
                        "--disable-background-networking", "--no-first-run",
                        f"http://127.0.0.1:{server.admin_port}/{fragment}"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def crossing(a: dict, b: dict) -> bool:
    """Whether two straight edges cross (strictly inside both; shared endpoints do not count)."""
    p = [(float(e["x1"]), float(e["y1"]), float(e["x2"]), float(e["y2"])) for e in (a, b)]
    (x1, y1, x2, y2), (x3, y3, x4, y4) = p

    def side(ax, ay, bx, by, cx, cy):
        return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)

    d1, d2 = side(x3, y3, x4, y4, x1, y1), side(x3, y3, x4, y4, x2, y2)
    d3, d4 = side(x1, y1, x2, y2, x3, y3), side(x1, y1, x2, y2, x4, y4)
    return d1 * d2 < 0 and d3 * d4 < 0


def test_dashboard_renders_keys_graph_proxies_and_requests_without_console_errors(served):
    dom, log = render(served)
    assert not re.findall(r":CONSOLE[^\n]*", log), re.findall(r":CONSOLE[^\n]*", log)
    page = Texts()
    page.feed(dom)
    keys = page.text["keys"]
    assert "cart-pr-1" in keys and "feature-x" in keys and "RouteGroup feature-x" in keys
    assert "cart.shop → endpoints 127.0.0.1:" in keys and re.search(r"in \d+ d", keys)
    assert "generation" in page.text["status"] and "2 proxies" in page.text["status"]  # web and the edge
    assert "web.shop" in page.text["proxies"] and "ACK" in page.text["proxies"]
    assert "node forked" in page.groups and page.groups.count("node") == 5  # cart forked, the rest baseline
    assert "web.shop" in page.text["requests"] and "cart.shop" in page.text["requests"]
    assert "Click a key" in page.text["keys-hint"]
    assert "specs" in page.hidden  # the specs are valid: no banner


def test_the_graph_has_arrowheads_and_no_crossing_edges(served):
    page = Texts()
    page.feed(render(served)[0])
    assert {"arrow", "arrow-fork"} <= set(page.markers)
    calls = {(e["data-from"], e["data-to"]) for e in page.edges}
    assert calls == {("web.shop", "cart.shop"), ("web.shop", "a-svc.shop"), ("web.shop", "z-svc.shop"),
                     ("a-svc.shop", "z-leaf.shop"), ("z-svc.shop", "a-leaf.shop")}
    assert all(e["marker-end"].startswith("url(#arrow") for e in page.edges)
    assert next(e for e in page.edges if e["data-to"] == "cart.shop")["marker-end"] == "url(#arrow-fork)"
    crossed = [(a["data-from"], a["data-to"], b["data-from"], b["data-to"])
               for i, a in enumerate(page.edges) for b in page.edges[i + 1:] if crossing(a, b)]
    assert not crossed  # alphabetical rows would cross a-svc -> z-leaf with z-svc -> a-leaf


def test_keys_route_group_expiry_preview_links_and_the_selection_in_the_address(served):
    page = Texts()
    page.feed(render(served, "#key=feature-x")[0])
    assert page.text["graph-key"] == "feature-x" and page.text["requests-key"] == "feature-x"
    keys = page.text["keys"]
    assert "never" not in keys and len(re.findall(r"in \d+ d", keys)) == 2  # the group expires with its sandbox
    assert f"http://cart-pr-1.preview.example.test:{EDGE_PORT}/" in page.links
    assert f"http://feature-x.preview.example.test:{EDGE_PORT}/" in page.links


def test_requests_with_a_key_nobody_has_are_shown_with_the_nearest_key(served):
    page = Texts()
    page.feed(render(served)[0])
    assert "unknown" not in page.hidden
    assert "cart-pr-2" in page.text["unknown-keys"] and "cart-pr-1" in page.text["unknown-keys"]


def test_invalid_specs_on_disk_are_shown_with_their_diagnostics(served):
    bad = served.dir / "zz-bad.yaml"
    bad.write_text("apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: b}\n"
                   "spec: {forks: [{service: kart, to: {host: x.example.com}}]}\n")
    try:
        wait_until(lambda: json.loads(served.get("/api/state")[1])["specs"]["errors"], 10, what="errors shown")
        state = json.loads(served.get("/api/state")[1])
        assert state["specs"]["valid"] is False and "MF201" in state["specs"]["errors"][0]
        assert state["overview"]["keys"]  # the last good configuration is still what is served
        page = Texts()
        page.feed(render(served)[0])
        assert "specs" not in page.hidden
        assert "invalid (1 error)" in page.text["specs-title"] and "zz-bad.yaml" in page.text["specs-errors"]
        assert "unknown service 'kart'" in page.text["specs-errors"] and "specs invalid" in page.text["status"]
    finally:
        bad.unlink()
        wait_until(lambda: json.loads(served.get("/api/state")[1])["specs"]["valid"], 10, what="valid again")


def test_api_state_is_the_same_data_as_json(served):
    code, body = served.get("/api/state")
    state = json.loads(body)
    assert code == 200 and [k["key"] for k in state["overview"]["keys"]] == ["cart-pr-1", "feature-x"]
    assert state["specs"] == {"valid": True, "errors": [], "vanished": [], "loaded": True}
    web = next(p for p in state["proxies"] if p["node"] == "web.shop")
    assert web["types"]["CDS"]["state"] == "ACK" and web["listener"].startswith("127.0.0.1:")
    assert next(p for p in state["proxies"] if p["node"] == "meshforge-edge")["listener"] == f"0.0.0.0:{EDGE_PORT}"
    assert state["requestsByKey"]["cart-pr-1"] >= 1
