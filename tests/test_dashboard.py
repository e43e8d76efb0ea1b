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

from .envoy_harness import Backend, http_get
from .serve_harness import Server, Sidecar, wait_until

SPECS = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: shop}}
spec:
  services:
  - {{name: web, ports: [{{name: http, port: 80}}], dependsOn: [cart]}}
  - {{name: cart, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: {cart}}}], dependsOn: []}}
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
    """Text per element id, and the classes of SVG groups."""

    def __init__(self):
        super().__init__()
        self.stack: list[str | None] = []
        self.text: dict[str, str] = {}
        self.groups: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append(a.get("id"))
        if tag == "g":
            self.groups.append(a.get("class") or "")

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            if i:
                self.text[i] = self.text.get(i, "") + data


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("dash") / "specs"
    d.mkdir()
    with Backend("cart-v1") as cart, Backend("cart-v2") as cart2:
        (d / "specs.yaml").write_text(SPECS.format(cart=cart.port, cart2=cart2.port))
        with Server([d]) as server, Sidecar("web.shop", server) as web:
            wait_until(lambda: http_get(web.outbound, "cart", {"baggage": "meshforge-routing-key=cart-pr-1"})
                       .get("name") == "cart-v2", 20, what="sidecar configured")
            wait_until(lambda: json.loads(server.get("/api/requests?key=cart-pr-1")[1])["requests"], 10,
                       what="request logged")
            yield server


def render(server) -> tuple[str, str]:
    r = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                        "--virtual-time-budget=4000", "--enable-logging=stderr", "--v=0",
                        f"http://127.0.0.1:{server.admin_port}/"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def test_dashboard_renders_keys_graph_proxies_and_requests_without_console_errors(served):
    dom, log = render(served)
    assert not re.findall(r":CONSOLE[^\n]*", log), re.findall(r":CONSOLE[^\n]*", log)
    page = Texts()
    page.feed(dom)
    keys = page.text["keys"]
    assert "cart-pr-1" in keys and "feature-x" in keys and "RouteGroup feature-x" in keys
    assert "cart.shop → endpoints 127.0.0.1:" in keys and re.search(r"in \d+ d", keys)
    assert "generation" in page.text["status"] and "1 proxies" in page.text["status"]
    assert "web.shop" in page.text["proxies"] and "ACK" in page.text["proxies"]
    assert "node forked" in page.groups and page.groups.count("node") == 1  # cart forked, web baseline
    assert "web.shop" in page.text["requests"] and "cart.shop" in page.text["requests"]


def test_api_state_is_the_same_data_as_json(served):
    code, body = served.get("/api/state")
    state = json.loads(body)
    assert code == 200 and [k["key"] for k in state["overview"]["keys"]] == ["cart-pr-1", "feature-x"]
    assert state["proxies"][0]["node"] == "web.shop" and state["proxies"][0]["types"]["CDS"]["state"] == "ACK"
    assert state["requestsByKey"]["cart-pr-1"] >= 1
