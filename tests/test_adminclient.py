"""adminclient: serve's admin API read from outside; every failure an AdminError naming the URL."""

from __future__ import annotations

import http.server
import threading

import pytest

from meshforge.adminclient import AdminClient, AdminError
from meshforge.envoyproc import free_port


@pytest.fixture
def admin():
    """A stand-in for serve's admin: /api/requests, /api/state, a non-JSON page and a 500."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body, status = {"/api/state": b'{"overview": {"services": []}}',
                            "/api/requests?key=k1": b'{"requests": [{"key": "k1"}]}',
                            "/api/requests?limit=5": b'{"requests": []}',
                            "/text": b"<html>", "/list": b"[1]"}.get(self.path, b'{"error": "no"}'), 200
            if self.path == "/boom":
                status = 500
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_reads_requests_and_state(admin):
    client = AdminClient(admin)
    assert client.requests(key="k1") == [{"key": "k1"}]
    assert client.requests(limit=5) == []
    assert client.state() == {"overview": {"services": []}}


@pytest.mark.parametrize("path,why", [("/text", "Expecting value"), ("/boom", "500"), ("/list", "not a JSON object")])
def test_a_bad_answer_is_an_admin_error_naming_the_url(admin, path, why):
    with pytest.raises(AdminError) as e:
        AdminClient(admin).get(path)
    assert f"http://{admin}{path}" in str(e.value) and why in str(e.value)


def test_no_list_of_requests_is_an_admin_error(admin):
    with pytest.raises(AdminError, match="no list of requests"):
        AdminClient(admin).requests(key="other")


def test_unreachable_bad_addresses_and_bad_tls_files(tmp_path):
    with pytest.raises(AdminError, match="cannot read http://127.0.0.1:"):
        AdminClient(f"127.0.0.1:{free_port()}", timeout=2).state()
    for bad in ("localhost", "127.0.0.1:0", "::1:80", "a b:80"):
        with pytest.raises(ValueError):
            AdminClient(bad)
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(AdminError, match="cannot use the TLS files"):
        AdminClient("127.0.0.1:1", str(tmp_path / "ca.pem"))
    with pytest.raises(AdminError, match="cannot use the TLS files"):
        AdminClient("127.0.0.1:1", str(tmp_path / "missing.pem"))
    assert AdminClient("[::1]:18080").base == "http://[::1]:18080"
