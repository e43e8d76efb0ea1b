"""server/admin: what the admin server can read and who may ask it."""

from __future__ import annotations

import json
import subprocess
import sys

from meshforge.emit.xds.compiler import XdsCompiler
from meshforge.emit.xds.resources import AccessLogs
from meshforge.pipeline import compile_paths
from meshforge.xdsapi import EDGE_NODE

EDGE_MESH = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {name: staging, namespace: shop}
spec:
  edge: {service: web, hosts: [shop.example.com], previewDomain: preview.example.com, trustedSources: [10.0.0.0/8]}
  services:
  - {name: web, ports: [{name: http, port: 80}], dependsOn: [api]}
  - {name: api, ports: [{name: grpc, port: 9090}], endpoints: [{address: 127.0.0.1, port: 9}]}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1, namespace: shop}
spec:
  forks: [{service: api, to: {endpoints: [{address: 127.0.0.1, port: 10}]}}]
"""


def test_debug_config_decodes_every_resource_without_the_compiler_loaded(tmp_path):
    """The admin server decodes what the cache holds in a process that has not imported the compiler: every
    message a snapshot carries, in an Any or not, is registered by the admin module itself."""
    (tmp_path / "specs.yaml").write_text(EDGE_MESH)
    model, diags = compile_paths([str(tmp_path)])
    assert model is not None, diags.items
    snap = XdsCompiler(access_logs=AccessLogs(100)).compile(model)
    dumped = [(t, r.body.hex()) for node, port in (("web.shop", 15001), (EDGE_NODE, 8080))
              for t, by_name in snap.resources(node, port).items() for r in by_name.values()]
    assert len({t for t, _ in dumped}) == 4
    (tmp_path / "resources.json").write_text(json.dumps(dumped))
    code = ("import json, sys\n"
            "from meshforge.server.admin import _decode\n"
            "assert 'meshforge.emit.xds.resources' not in sys.modules\n"
            "for t, body in json.load(open(sys.argv[1])):\n"
            "    _decode(t, bytes.fromhex(body))\n"
            "print('decoded')\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "resources.json")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "decoded", r.stderr[-2000:]
