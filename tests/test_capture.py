"""Transparent capture (`meshforge capture-rules`, `bootstrap --transparent`) on this machine's real kernel:
in a network namespace made by the test (tests/netns_harness.py), applications with no proxy settings
(tests/capture_app.py, run as another user than the sidecar) call services by name over HTTP/1.1, HTTP/2
(h2c) and gRPC; netfilter sends their connections to a real Envoy configured by a real `meshforge serve`;
keyed requests reach the fork hop by hop, key-less ones the baseline, outside addresses and TCP pass through
untouched, the sidecar's own xDS connection is not captured; removing the rules restores direct traffic."""

from __future__ import annotations

import pytest

from meshforge.capture import Capture, rules

from .netns_harness import kernel_reason, names, transparent_mesh


def test_rules_capture_everything_but_the_sidecar_loopback_and_exclusions():
    text = rules(Capture(1337, 15001, ("10.0.0.0/8", "192.168.1.7/32", "10.0.0.0/8"), (22, 9901)))
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert "-A OUTPUT -p tcp -j MESHFORGE_OUTPUT" in lines
    body = [line for line in lines if line.startswith("-A MESHFORGE_OUTPUT")]
    assert body[0] == "-A MESHFORGE_OUTPUT -m owner --uid-owner 1337 -j RETURN"  # first: the sidecar never loops
    assert body[-1] == "-A MESHFORGE_OUTPUT -p tcp -j REDIRECT --to-ports 15001"  # last: everything else
    assert "-A MESHFORGE_OUTPUT -d 127.0.0.0/8 -j RETURN" in body
    assert [b for b in body if "-d 10." in b or "-d 192" in b] == [
        "-A MESHFORGE_OUTPUT -d 10.0.0.0/8 -j RETURN", "-A MESHFORGE_OUTPUT -d 192.168.1.7/32 -j RETURN"]
    assert "-A MESHFORGE_OUTPUT -p tcp -m multiport --dports 22,9901 -j RETURN" in body
    many = rules(Capture(0, 15001, (), tuple(range(1000, 1020))))
    assert many.count("multiport") == 2  # iptables takes 15 ports a rule
    six = rules(Capture(0, 15001, ("fd00::/8",), (), ipv6=True))
    assert "-d ::1/128 -j RETURN" in six and "-d fd00::/8 -j RETURN" in six
    with pytest.raises(ValueError, match="IPv6 range"):
        Capture(0, 15001, ("fd00::/8",))
    with pytest.raises(ValueError, match="not a CIDR"):
        Capture(0, 15001, ("10.0.0.300/8",))
    assert rules(Capture(0, 15001), remove=True).splitlines()[1:4] == [
        "-D OUTPUT -p tcp -j MESHFORGE_OUTPUT", "-F MESHFORGE_OUTPUT", "-X MESHFORGE_OUTPUT"]


def test_applications_without_proxy_settings_are_captured_and_routed(tmp_path):
    reason = kernel_reason()
    if reason:
        pytest.skip(reason)
    with transparent_mesh(tmp_path) as ns:
        key = {"baggage": "meshforge-routing-key=pr-1"}
        pair = "=".join(next(iter(key.items())))
        # HTTP/1.1, hop by hop: the frontend's own call to cart is captured too
        assert names(ns.call("http", "http://frontend:8080/", pair)) == ["frontend", "cart-pr"]
        assert names(ns.call("http", "http://frontend:8080/")) == ["frontend", "cart"]
        assert names(ns.call("http", "http://cart:8080/", "x-meshforge-routing-key=pr-1")) == ["cart-pr"]
        assert names(ns.call("http", "http://cart.default:8080/", "baggage=a=1, meshforge-routing-key=pr-1")) == \
            ["cart-pr"]
        assert names(ns.call("http", "http://cart:8080/", "x-meshforge-routing-key=pr-2")) == ["cart"]
        # HTTP/2 without TLS, and gRPC (h2c) on the gRPC port
        h2 = ns.call("h2", "http://cart:8080/", pair)
        assert h2["name"] == "cart-pr" and h2["http_version"] == "HTTP/2", h2
        assert ns.call("h2", "http://cart:8080/")["name"] == "cart"
        assert ns.call("grpc", "ledger:9090", pair)["name"] == "ledger-pr"
        assert ns.call("grpc", "ledger:9090")["name"] == "ledger"
        # outside the mesh: an HTTP port the mesh also serves, by name, with and without a key; raw TCP
        assert ns.call("http", "http://outside:8080/", pair)["name"] == "outside"
        assert ns.call("http", "http://outside:8080/")["name"] == "outside"
        assert ns.call("tcp", "outside:7000")["answer"] == "outside-tcp:ping"
        # it was the sidecar: its listener took the connections, and its xDS connection stayed its own
        stats = ns.run("python3", "-c", "import urllib.request;print(urllib.request.urlopen("
                       "'http://127.0.0.1:15000/stats?filter=^(listener.*downstream_cx_total|cluster.meshforge_xds"
                       ".upstream_cx_total|cluster.meshforge_passthrough.upstream_cx_total)').read().decode())").stdout
        got = {line.split(": ")[0]: int(line.split(": ")[1]) for line in stats.splitlines() if ": " in line}
        assert got["cluster.meshforge_xds.upstream_cx_total"] >= 1, got
        assert got["cluster.meshforge_passthrough.upstream_cx_total"] >= 3, got
        assert got["listener.127.0.0.1_15001.downstream_cx_total"] >= 12, got
        # netfilter's own count: the sidecar's connections (xDS, access logs, every upstream) took the owner
        # rule's RETURN, never the REDIRECT back into itself
        table = ns.run("iptables", "-t", "nat", "-L", "MESHFORGE_OUTPUT", "-v", "-n", "-x").stdout
        owner = next(line.split() for line in table.splitlines() if "owner UID match 0" in line)
        assert int(owner[0]) >= got["cluster.meshforge_xds.upstream_cx_total"], table
        # the rules removed: the same keyed call goes straight to the baseline, no sidecar in the way
        r = ns.run("iptables-restore", "--noflush",
                   input=rules(Capture(0, 15001), remove=True))
        assert r.returncode == 0, r.stderr
        assert names(ns.call("http", "http://cart:8080/", pair)) == ["cart"]
        assert names(ns.call("http", "http://frontend:8080/", pair)) == ["frontend", "cart"]


def test_the_readme_commands_run_as_pasted(tmp_path):
    """The README's "Without a mesh" block, line by line, in a fresh network namespace: the capture goes in,
    the bootstrap is written, the capture comes out again (and the namespace's nat table is as before)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    reason = kernel_reason()
    if reason:
        pytest.skip(reason)
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"^## Without a mesh.*?\n```sh\n(.*?)^```", text, re.M | re.S)[1]
    lines = [line.split("   #")[0].split("  #")[0].strip() for line in block.strip().splitlines()]
    assert len(lines) == 3
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    name = f"mf-readme-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        def run(line: str) -> str:
            r = subprocess.run(["ip", "netns", "exec", name, "bash", "-c", line], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (line, r.stderr)
            return subprocess.run(["ip", "netns", "exec", name, "iptables-save", "-t", "nat"], capture_output=True,
                                  text=True, check=True).stdout
        before = run("true")
        after = run(lines[0])
        assert "-A OUTPUT -p tcp -j MESHFORGE_OUTPUT" in after and "--uid-owner 1337" in after
        run(lines[1])
        assert "meshforge.transparent" in (tmp_path / "envoy.yaml").read_text()
        removed = run(lines[2])
        assert "MESHFORGE" not in removed
        strip = lambda t: [x for x in t.splitlines() if not x.startswith("#")]  # noqa: E731 - dates in comments
        assert strip(removed) == strip(before)
    finally:
        subprocess.run(["ip", "netns", "del", name])
