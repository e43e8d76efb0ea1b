"""serve under abuse: bad node metadata, unknown types, bad admin requests, forged log lines, NACKs made
visible, and hot reload that survives its directory being deleted or swapped."""

from __future__ import annotations

import os
import socket
import time

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from meshforge.xdsapi import LISTEN_ADDRESS_METADATA, OUTBOUND_PORT_METADATA

from .serve_harness import CLUSTER, SPEC, RawClient, Server, api_sandbox, node, wait_until
from .specs import sandbox


@pytest.fixture
def server(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    with Server([d]) as s:
        s.dir = d
        yield s


@pytest.mark.parametrize("key,value", [(OUTBOUND_PORT_METADATA, v) for v in (-1, 1e30, "x", 70000, True, 0.5)] +
                         [(LISTEN_ADDRESS_METADATA, v) for v in ("host:80", "1.2.3.4", "1.2.3.4:0", 8080, "::1:80")])
def test_bad_node_metadata_ends_the_stream_with_a_clear_status(server, key, value):
    meta = struct_pb2.Struct()
    meta.update({key: value})
    c = RawClient(server.xds_port)
    try:
        c.send(node=base_pb2.Node(id="bad", cluster="web.shop", metadata=meta), type_url=CLUSTER)
        assert c.recv() is None
        assert c.error is not None, "the stream ended without an error status"
        assert c.error.code() == grpc.StatusCode.INVALID_ARGUMENT, (c.error.code(), c.error.details(), server.log()[-3000:])
        assert key in c.error.details()
        wait_until(lambda: "closing the sotw stream" in server.log())
    finally:
        c.close()


def test_unknown_type_urls_grow_neither_metrics_nor_state(server):
    c = RawClient(server.xds_port)
    try:
        c.send(node=node("web.shop"), type_url=CLUSTER)
        assert c.recv().type_url == CLUSTER
        before = len(server.get("/metrics")[1])
        for i in range(20_000):
            c.send(type_url=f"type.googleapis.com/evil.T{i}")
        c.send(type_url=CLUSTER, resource_names=["x"], response_nonce="stale")
        time.sleep(1.0)
        after = len(server.get("/metrics")[1])
        assert after - before < 2_000, (before, after)
        assert c.nothing(0.2)
    finally:
        c.close()


def test_bad_admin_parameters_get_400(server):
    assert server.get("/debug/config?node=web.shop&port=x")[0] == 400
    assert server.get("/debug/config?node=web.shop&port=70000")[0] == 400
    assert server.get("/debug/config?node=" + "a" * 300)[0] == 400
    assert server.get("/healthz") == (200, "ok\n")


def test_idle_admin_connections_time_out_and_are_bounded(server, monkeypatch):
    socks = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", server.admin_port), timeout=5)
            socks.append(s)
        deadline = time.monotonic() + 15
        closed = 0
        for s in socks:  # each is closed by the server: refused beyond the bound, timed out within it
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                closed += s.recv(1) == b""
            except (socket.timeout, ConnectionResetError):
                closed += 1
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()
    assert server.get("/healthz") == (200, "ok\n")


def test_a_nack_is_visible_and_cannot_forge_log_lines(server):
    c = RawClient(server.xds_port)
    try:
        c.send(node=node("web.shop"), type_url=CLUSTER)
        r1 = c.recv()
        forged = "bad cluster\n2026-01-01 00:00:00,000 INFO meshforge.serve: all good"
        c.send(type_url=CLUSTER, version_info="", response_nonce=r1.nonce,
               error_detail=status_pb2.Status(code=3, message=forged))
        wait_until(lambda: "rejected" in server.get("/readyz")[1])
        status, body = server.get("/readyz")
        assert status == 200 and "proxy web.shop (raw-client) rejected its configuration: CDS: bad cluster" in body
        assert server.metric("meshforge_proxy_config_rejected", 'node="web.shop",type="CDS"') == 1
        log = server.log()
        assert "bad cluster\\n2026-01-01" in log
        assert not any(line.startswith("2026-01-01 00:00:00,000 INFO meshforge.serve: all good")
                       for line in log.splitlines())
        (server.dir / "pr-1.yaml").write_text(api_sandbox("pr-1"))  # a new configuration, accepted
        r2 = c.recv()
        c.send(type_url=CLUSTER, version_info=r2.version_info, response_nonce=r2.nonce)
        wait_until(lambda: server.get("/readyz") == (200, "ready\n"))
        assert server.metric("meshforge_proxy_config_rejected", 'node="web.shop",type="CDS"') == 0
    finally:
        c.close()


def clusters_of(server, node_="web.shop") -> set[str]:
    import json

    status, body = server.get(f"/debug/config?node={node_}")
    return {c["name"] for c in json.loads(body)["resources"]["Cluster"]} if status == 200 else set()


def test_hot_reload_survives_git_sync_symlink_swaps_and_a_recreated_directory(tmp_path):
    link = tmp_path / "specs"
    rev = tmp_path / "rev0"
    rev.mkdir()
    (rev / "baseline.yaml").write_text(SPEC)
    os.symlink(rev, link)
    with Server([link]) as s:
        for i in range(1, 4):  # git-sync: a new revision beside the old, the link swapped, the old deleted
            new = tmp_path / f"rev{i}"
            new.mkdir()
            (new / "baseline.yaml").write_text(SPEC)
            (new / "sb.yaml").write_text(api_sandbox(f"pr-{i}"))
            os.symlink(new, tmp_path / "specs.tmp")
            os.replace(tmp_path / "specs.tmp", link)
            old = tmp_path / f"rev{i - 1}"
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
            want = f"outbound|80|pr-{i}|api.shop.svc.cluster.local"
            wait_until(lambda: want in clusters_of(s), 10, what=f"revision {i} served")
    d = tmp_path / "plain"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    with Server([d]) as s:
        for i in range(2):
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
            wait_until(lambda: "watched path missing" in s.get("/readyz")[1], 10, what="vanished path reported")
            d.mkdir()
            (d / "baseline.yaml").write_text(SPEC)
            (d / "sb.yaml").write_text(api_sandbox(f"back-{i}"))
            want = f"outbound|80|back-{i}|api.shop.svc.cluster.local"
            wait_until(lambda: want in clusters_of(s), 10, what="re-created directory served")
            # the paths are checked once a second: the report may trail what is served by that much
            wait_until(lambda: "missing" not in s.get("/readyz")[1], 5, what="the path no longer reported missing")


def test_a_slow_spec_does_not_delay_answers_to_proxies(server, tmp_path):
    services = "".join(f"  - {{name: s{i}, ports: [{{name: http, port: 80}}], dependsOn: []}}\n" for i in range(15_000))
    big = f"apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {{name: big, namespace: big}}\nspec:\n" \
          f"  services:\n{services}"
    staged = tmp_path / "big.yaml"
    staged.write_text(big)
    os.replace(staged, server.dir / "big.yaml")
    time.sleep(0.6)  # the watcher has started the reload, which takes seconds (~4.5 s here)
    c = RawClient(server.xds_port)
    try:
        t0 = time.monotonic()
        c.send(node=node("web.shop"), type_url=CLUSTER)
        assert c.recv(timeout=10).type_url == CLUSTER
        answered = time.monotonic() - t0
        assert "published snapshot 2" not in server.log(), "the reload finished first: make the spec slower"
        assert answered < 1.0, answered
        wait_until(lambda: "published snapshot 2" in server.log(), 60)
    finally:
        c.close()


def test_a_second_serve_on_a_taken_address_refuses_to_start(server, tmp_path):
    import subprocess
    import sys

    from meshforge.envoyproc import free_port

    for xds, admin in ((server.xds_port, free_port()), (free_port(), server.admin_port)):
        r = subprocess.run([sys.executable, "-m", "meshforge.cli", "serve", str(server.dir), "--xds-address",
                            f"127.0.0.1:{xds}", "--admin-address", f"127.0.0.1:{admin}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        taken = xds if xds == server.xds_port else admin
        assert f"127.0.0.1:{taken} is already in use by another process" in r.stderr
        assert "add_port" not in r.stderr and "E1201" not in r.stderr and "Traceback" not in r.stderr
    assert server.get("/healthz")[0] == 200  # the first one goes on serving


def test_a_multi_line_diagnostic_is_logged_line_by_line(server):
    (server.dir / "bad.yaml").write_text(sandbox("bad", ("apx", 10)))
    wait_until(lambda: "specs on disk are invalid" in server.get("/readyz")[1], 10, what="invalid specs noticed")
    log = server.log_path.read_text()
    assert "specs invalid (1 error);" in log
    line = next(x for x in log.splitlines() if "error[MF201]" in x)
    assert "\\n" not in line  # the hint is on a line of its own, not an escaped newline
    assert any(x.rstrip().endswith('hint: did you mean "api"?') for x in log.splitlines())


def test_serve_without_an_admin_address_says_what_is_missing(tmp_path):
    import subprocess
    import sys

    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    p = subprocess.Popen([sys.executable, "-m", "meshforge.cli", "serve", str(d), "--xds-address", "127.0.0.1:0"],
                         stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 20
        while "admin" not in line and time.monotonic() < deadline:
            line = p.stderr.readline()
        assert "no --admin-address: no dashboard" in line
    finally:
        p.terminate()
        p.wait(10)


def test_the_admin_server_answers_only_to_its_own_names(tmp_path):
    """DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1 and reads the admin server; the
    request still names evil.example, so it gets 421. IP addresses, localhost and --admin-host names pass.
    An HTTP/1.1 request with no Host at all is malformed: 400, as RFC 9112 requires (h11 enforces it)."""
    import http.client

    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)

    def get(port: int, host: str | None, path: str = "/api/state") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.putrequest("GET", path, skip_host=True)
            if host is not None:
                conn.putheader("Host", host)
            conn.endheaders()
            return conn.getresponse().status
        finally:
            conn.close()

    with Server([d], args=("--admin-host", "meshforge.infra")) as s:
        p = s.admin_port
        for host in ("evil.example", f"evil.example:{p}", "127.0.0.1.nip.io", "localhost.evil.example", None, ""):
            for path in ("/api/state", "/", "/debug/config?node=web.shop", "/readyz"):
                assert get(p, host, path) == (400 if host is None else 421), (host, path)
        for host in (f"127.0.0.1:{p}", "127.0.0.1", f"[::1]:{p}", "10.1.2.3", f"localhost:{p}", "LOCALHOST",
                     "meshforge.infra", f"Meshforge.Infra:{p}"):
            assert get(p, host) == 200, host


def test_a_client_holds_a_bounded_number_of_streams(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "baseline.yaml").write_text(SPEC)
    with Server([d], args=("--max-streams-per-peer", "3")) as s:
        clients = []
        try:
            for _ in range(3):  # one after another: a stream opened with the others could reach serve before them
                clients.append(RawClient(s.xds_port))
                clients[-1].send(node=node("web.shop"), type_url=CLUSTER)
                assert clients[-1].recv() is not None
            clients.append(RawClient(s.xds_port))
            clients[3].send(node=node("web.shop"), type_url=CLUSTER)
            assert clients[3].recv() is None and clients[3].error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "3 xDS streams from 127.0.0.1 already" in clients[3].error.details()
            clients[0].close()
            wait_until(lambda: s.metric("meshforge_connected_proxies") == 2, 10, what="a stream closed")
            again = RawClient(s.xds_port)
            clients.append(again)
            again.send(node=node("web.shop"), type_url=CLUSTER)
            assert again.recv() is not None  # room again
            assert s.metric("meshforge_xds_streams_ended_total", 'reason="streams per peer"') == 1
        finally:
            for c in clients[1:]:
                c.close()


def test_a_client_that_never_takes_its_configuration_is_ended_and_bounded(tmp_path):
    """Clients that ask for a large configuration (here ~0.8 MB of clusters) and never read it: while their
    responses wait beyond the pending-bytes limit, new streams are refused rather than memory grown, and each
    such stream is ended after the stall timeout (a healthy proxy is served again then)."""
    from meshforge.synthetic import generate

    from .serve_harness import StallingClient

    d = generate(tmp_path / "specs", services=3000, sandboxes=0, deps=None)
    with Server([d], args=("--stall-timeout", "4", "--max-pending-bytes", str(1 << 20))) as s:
        healthy = RawClient(s.xds_port)  # alone, a proxy gets its 0.8 MB
        healthy.send(node=node("svc-0002.bench"), type_url=CLUSTER)
        assert len(healthy.recv(timeout=20).resources) == 3000
        healthy.close()
        stalled = [StallingClient(s.xds_port, f"svc-000{i}.bench") for i in (1, 3)]  # 1.6 MB that nobody takes
        try:
            wait_until(lambda: s.metric("meshforge_connected_proxies") == 2, 10, what="both stalled streams open")
            time.sleep(0.5)
            refused = RawClient(s.xds_port)
            refused.send(node=node("svc-0004.bench"), type_url=CLUSTER)
            assert refused.recv(timeout=10) is None and refused.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "bytes of responses wait for clients" in refused.error.details()
            refused.close()
            wait_until(lambda: s.metric("meshforge_xds_streams_ended_total", 'reason="stalled"') == 2, 20,
                       what="the stalled streams ended")
            assert "was not taken in 4 s" in s.log()
            assert s.metric("meshforge_xds_streams_ended_total", 'reason="pending bytes"') == 1
            wait_until(lambda: _served(s), 20, what="a proxy served again")
        finally:
            for c in stalled:
                c.close()


def _served(s) -> bool:
    c = RawClient(s.xds_port)
    try:
        c.send(node=node("svc-0005.bench"), type_url=CLUSTER)
        return c.recv(timeout=10) is not None
    finally:
        c.close()
