"""`meshforge sandbox show`: a sandbox's key, state, expiry, preview URL and forks (with a workload fork's
images), as text, JSON and Markdown for a pull request's comment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from meshforge.lower import fork_name

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ci" / "gitops"


def test_show_a_workload_fork_with_its_preview_url_and_image(cli, tmp_path):
    d = tmp_path / "gitops"
    shutil.copytree(EXAMPLE, d)
    r = cli("sandbox", "create", "pr-1", "--fork", "cartservice=ghcr.io/acme/cart:abc", "--ttl", "3d", "--now",
            "2026-11-26T00:00:00Z", "-o", d / "sandboxes" / "pr-1.yaml")
    assert r.exit_code == 0, r.output
    r = cli("sandbox", "show", "pr-1", d, "--output", "json", "--now", "2026-11-26T01:00:00Z")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["routingKey"] == "pr-1" and data["active"] and data["expiresAt"] == "2026-11-29T00:00:00Z"
    assert data["previewURL"] == "https://pr-1.preview.example.com/"
    assert data["forks"] == [{"service": "cartservice.default", "images": ["ghcr.io/acme/cart:abc"],
                              "destination": f"host {fork_name('cartservice', 'pr-1')}.default.svc.cluster.local"}]
    md = cli("sandbox", "show", "pr-1", d, "--output", "markdown", "--now", "2026-11-26T01:00:00Z").stdout
    assert md.startswith("### meshforge sandbox `pr-1`") and "| preview | https://pr-1.preview.example.com/ |" in md
    assert "image `ghcr.io/acme/cart:abc`" in md and "(in 3 days)" in md
    text = cli("sandbox", "show", "pr-1", d, "--now", "2026-11-30T00:00:00Z").stdout  # after expiresAt
    assert "expired: it routes nothing" in text and "preview" not in text


def test_an_unknown_sandbox_is_an_error_with_a_hint(cli, tmp_path):
    d = tmp_path / "gitops"
    shutil.copytree(EXAMPLE, d)
    cli("sandbox", "create", "pr-1", "--fork", "cartservice=ghcr.io/acme/cart:abc", "-o", d / "sandboxes" / "pr-1.yaml")
    r = cli("sandbox", "show", "pr-2", d)
    assert r.exit_code == 1 and "no sandbox 'pr-2'" in r.stderr and 'did you mean "pr-1"' in r.stderr
