"""overview: the mesh as the dashboard's JSON (services and whom they call, keys, sandboxes, the edge)."""

from __future__ import annotations

import json

from meshforge.overview import mesh_overview
from meshforge.pipeline import compile_paths

from .conftest import BASELINE, NOW
from .specs import sandbox


def test_the_overview_names_services_keys_sandboxes_and_the_edge(write):
    edge = "  edge: {service: frontend, hosts: [shop.example.test], previewDomain: preview.example.test}\n"
    d = write({"b.yaml": BASELINE.replace("spec:\n", "spec:\n" + edge, 1),
               "s.yaml": sandbox("pr-1", ("cartservice", "cart-pr-1.example")),
               "old.yaml": sandbox("pr-0", ("checkout", "c.example"), expires="2026-11-01T00:00:00Z")})
    model, diags = compile_paths([str(d)], NOW)
    assert model is not None, diags.items
    got = mesh_overview(model)
    assert json.loads(json.dumps(got)) == got  # plain JSON data
    by_id = {s["id"]: s["dependsOn"] for s in got["services"]}
    assert by_id["frontend.shop"] == ["cartservice.shop", "checkout.shop"] and by_id["payments.billing"] is None
    (key,) = got["keys"]
    assert (key["key"], key["ownerKind"], key["owner"], key["previewHost"]) == \
        ("pr-1", "Sandbox", "pr-1", "pr-1.preview.example.test")
    assert key["forks"] == [{"service": "cartservice.shop", "sandbox": "pr-1", "destination": "host cart-pr-1.example"}]
    assert [(s["name"], s["expired"], s["expiresAt"]) for s in got["sandboxes"]] == \
        [("pr-0", True, "2026-11-01T00:00:00Z"), ("pr-1", False, None)]
    assert got["edge"] == {"service": "frontend.shop", "hosts": ["shop.example.test"],
                           "previewDomain": "preview.example.test"}
