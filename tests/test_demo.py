"""`meshforge demo` runs the whole story on real Envoys and leaves no process behind, even on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def our_processes() -> list[str]:
    """Envoys and servers started by a demo (their command lines name meshforge temp dirs)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "meshforge-envoy-" in cmd or "meshforge-demo-" in cmd:
            out.append(cmd)
    return out


def test_demo_prints_each_hop_and_cleans_up():
    assert our_processes() == []
    r = subprocess.run([sys.executable, "-m", "meshforge.cli", "demo"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NO_COLOR="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert "shop.localhost (public host) baseline baseline baseline" in lines
    assert "cart-pr-42.preview.localhost (preview URL) baseline cart-pr-42 baseline" in lines
    # keys forged from outside reach nothing; the caller's other baggage members still arrive
    assert "shop.localhost, forged header X-Meshforge-Routing-Key: cart-pr-42 baseline baseline baseline" in lines
    assert "shop.localhost, forged baggage: userId=7,meshforge-routing-key=cart-pr-42 baseline baseline baseline" in lines
    assert any("payments received baggage ['userId=7']" in line for line in lines)
    assert "nobody.preview.localhost (no such sandbox) HTTP 404" in lines
    assert "payments-pr-7.preview.localhost baseline baseline payments-pr-7" in lines
    assert any(line.startswith("payments-pr-7: http://payments-pr-7.preview.localhost:") for line in lines)
    assert any(line.startswith("routed by the edge and every sidecar") for line in lines)
    assert any(line.startswith("6. the dashboard") and "http://127.0.0.1:" in line for line in lines)
    assert any("frontend.demo -> cart.demo [cart-pr-42, key, 200]" in line for line in lines)
    assert "no loss: every service that received 'cart-pr-42' passed it on" in lines
    time.sleep(0.5)
    assert our_processes() == []


def test_demo_cleans_up_on_ctrl_c():
    p = subprocess.Popen([sys.executable, "-m", "meshforge.cli", "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("3."):  # server and every sidecar are running now
            break
    assert our_processes(), "expected the demo's processes to be running"
    p.send_signal(signal.SIGINT)
    rest = p.communicate(timeout=60)[0]
    assert "cleaning up" in rest
    time.sleep(0.5)
    assert our_processes() == []
