"""explain: hops for a key from a service, and (`--url`) the path of an outside request through the edge."""

from __future__ import annotations

import json

import pytest

from meshforge.explain import explain_url, render_text
from meshforge.pipeline import compile_paths

from .conftest import NOW

SPECS = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging, namespace: shop}
spec:
  edge:
    service: web
    hosts: [shop.example.com, "*.shop.example.org"]
    previewDomain: preview.example.com
    trustedSources: [10.0.0.0/8]
  services:
  - {name: web, ports: [{name: http, port: 80}], dependsOn: [cart]}
  - {name: cart, ports: [{name: http, port: 80}], dependsOn: []}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: cart-pr-1, namespace: shop}
spec:
  forks: [{service: cart, to: {host: cart-v2.shop.svc.cluster.local}}]
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: old, namespace: shop}
spec:
  expiresAt: "2020-01-01T00:00:00Z"
  forks: [{service: web, to: {host: web-v2.shop.svc.cluster.local}}]
"""


@pytest.fixture
def model(write):
    d = write({"specs.yaml": SPECS})
    m, diags = compile_paths([str(d)], NOW)
    assert m is not None and not diags.has_errors
    return m


def versions(e) -> dict[str, str]:
    return {h.service: h.sandbox or "baseline" for h in e.hops}


def test_preview_url_takes_the_key_of_its_host(model):
    e = explain_url(model, "https://Cart-PR-1.preview.example.com:8443/cart?x=1")
    assert e.key == "cart-pr-1" and e.active
    assert versions(e) == {"web.shop": "baseline", "cart.shop": "cart-pr-1"}
    assert "preview host of routing key 'cart-pr-1'" in render_text(e)


def test_preview_host_of_an_expired_or_unknown_key_is_a_404(model):
    for key, why in (("old", "expired"), ("nobody", "not defined")):
        e = explain_url(model, f"https://{key}.preview.example.com/")
        assert not e.active and e.hops == ()
        assert "404" in e.status and why in e.status


def test_public_host_from_outside_loses_the_key_and_a_trusted_source_keeps_it(model):
    outside = explain_url(model, "https://shop.example.com/", "cart-pr-1", "192.0.2.1")
    assert versions(outside) == {"web.shop": "baseline", "cart.shop": "baseline"}
    assert "removes the routing key" in outside.status
    assert versions(explain_url(model, "https://shop.example.com/", "cart-pr-1")) == versions(outside)
    inside = explain_url(model, "https://a.shop.example.org/", "cart-pr-1", "10.2.3.4")
    assert versions(inside) == {"web.shop": "baseline", "cart.shop": "cart-pr-1"}


def test_hosts_the_edge_does_not_serve_and_meshes_without_an_edge_are_errors(model, write):
    with pytest.raises(ValueError, match="does not serve host 'other.example.com'"):
        explain_url(model, "https://other.example.com/")
    with pytest.raises(ValueError):
        explain_url(model, "https://shop.example.com/", "cart-pr-1", "not-an-ip")
    d = write({"specs.yaml": SPECS.split("  edge:")[0] + SPECS.split("trustedSources: [10.0.0.0/8]\n")[1]}, "noedge")
    m, _ = compile_paths([str(d)], NOW)
    with pytest.raises(ValueError, match="no edge is declared"):
        explain_url(m, "https://shop.example.com/")


def test_cli_explain_url_and_its_usage_errors(cli, write):
    d = write({"specs.yaml": SPECS})
    r = cli("explain", d, "--url", "https://cart-pr-1.preview.example.com/", "--now", "2026-11-26T00:00:00Z")
    assert r.exit_code == 0 and "sandbox cart-pr-1" in r.output
    assert cli("explain", d, "--url", "https://x.example.net/").exit_code == 2
    assert cli("explain", d, "--url", "https://shop.example.com/", "--from", "web").exit_code == 2
    assert cli("explain", d, "--from", "web").exit_code == 2
    assert cli("explain", d, "--from", "web", "--routing-key", "k", "--source-address", "10.0.0.1").exit_code == 2


def test_every_caller_of_a_forked_service_and_the_ports_that_stay_on_the_baseline(cli):
    """golden/multiport-tcp: catalog is called by frontend and by orders, both shown reaching its fork;
    rabbitmq's TCP ports stay on the baseline (MF226 when it is forked, and explain says so per hop)."""
    from pathlib import Path

    d = Path(__file__).resolve().parents[1] / "golden" / "multiport-tcp" / "input"
    r = cli("explain", d, "--from", "frontend", "--routing-key", "queue-pr-3", "--output", "json")
    hops = json.loads(r.stdout)["hops"]
    catalog = [(h["via"], h["again"]) for h in hops if h["service"] == "catalog.shop"]
    assert sorted(catalog) == [("frontend.shop", False), ("orders.shop", True)]
    [rabbit] = [h for h in hops if h["service"] == "rabbitmq.shop"]
    assert rabbit["version"] == "sandbox" and rabbit["baselinePorts"] == ["5672/TCP", "4369/TCP"]
    text = cli("explain", d, "--from", "frontend", "--routing-key", "queue-pr-3").stdout
    assert "(ports 5672/TCP, 4369/TCP stay on the baseline)" in text and "(also reached above)" in text
    r = cli("validate", d)
    assert "warning[MF226]: sandbox queue-pr-3 forks rabbitmq.shop, but its ports 5672 (tcp-amqp), 4369 " \
           "(tcp-epmd) are not HTTP" in r.output
