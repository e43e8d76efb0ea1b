"""`meshforge demo` runs the whole story on real Envoys and leaves no process behind, even on Ctrl-C;
`demo --keep` stays up with its URLs live until Ctrl-C (exit 130)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path


def started_by(marker: str) -> list[str]:
    """Processes that carry `marker` in their environment: the demo this test started and everything it
    started, even re-parented after a crash. Other meshforge processes on the machine are not looked at."""
    out = []
    needle = f"MESHFORGE_TEST_RUN={marker}".encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if needle in (p / "environ").read_bytes().split(b"\0"):
                out.append((p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


def demo(*args: str, **kw) -> tuple[subprocess.Popen, str]:
    marker = uuid.uuid4().hex
    env = dict(os.environ, NO_COLOR="1", MESHFORGE_TEST_RUN=marker)
    return subprocess.Popen([sys.executable, "-m", "meshforge.cli", "demo", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw), marker


def gone(marker: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while started_by(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return started_by(marker) == []


def test_demo_prints_each_hop_and_cleans_up():
    p, marker = demo()
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 0, out
    lines = [" ".join(line.split()) for line in out.splitlines()]
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
    assert "(meshforge demo --keep stays up with these URLs live until Ctrl-C)" in lines
    assert gone(marker)


def test_demo_cleans_up_on_ctrl_c_and_exits_130():
    p, marker = demo()
    for line in p.stdout:
        if line.startswith("3."):  # server and every sidecar are running now
            break
    assert started_by(marker), "expected the demo's processes to be running"
    p.send_signal(signal.SIGINT)
    rest = p.communicate(timeout=60)[0]
    assert "cleaning up" in rest and p.returncode == 130
    assert gone(marker)


def test_demo_keep_stays_up_with_its_urls_live_until_ctrl_c():
    p, marker = demo("--keep")
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    text = "".join(seen)
    dashboard = re.search(r"dashboard:\s+(http://127\.0\.0\.1:\d+/)", text)[1]
    preview = re.search(r"cart-pr-42: http://cart-pr-42\.preview\.localhost:(\d+)/", text)[1]
    time.sleep(1.0)  # a person opening the URLs after the story has ended
    with urllib.request.urlopen(dashboard, timeout=5) as r:
        assert r.status == 200 and b"meshforge" in r.read()
    req = urllib.request.Request(f"http://127.0.0.1:{preview}/", headers={"Host": f"cart-pr-42.preview.localhost:{preview}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read())["next"]["name"] == "cart-pr-42"  # the preview URL reaches the fork, live
    assert p.poll() is None
    p.send_signal(signal.SIGINT)
    rest = p.communicate(timeout=60)[0]
    assert p.returncode == 130 and "cleaning up" in rest
    assert gone(marker)
