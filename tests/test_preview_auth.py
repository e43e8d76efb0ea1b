"""Signed preview links (issue 29, CONTRACT §5.5) at a real edge Envoy configured live by `meshforge serve`.

web's baseline and two sandboxes' forks of it (pr-1, pr-2) behind the edge, whose previewAuth is `signed`;
links are made by `meshforge preview link`, as a user makes them. The tokens are checked by Envoy alone.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshforge.emit.xds.backend import dump, to_dict
from meshforge.emit.xds.bootstrap import ads_bootstrap
from meshforge.envoyproc import Envoy, free_port
from meshforge.preview import COOKIE, TOKEN_PARAM

from .envoy_harness import SampleApp
from .serve_harness import Server, wait_until
from .specs import sandbox

MESHFORGE = os.path.join(os.path.dirname(sys.executable), "meshforge")
BASELINE = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: shop}}
spec:
  edge:
    service: web
    hosts: [shop.example.test]
    previewDomain: preview.example.test
    previewAuth:
      mode: signed
      maxTTL: 2d
      publicKeys:
{keys}
  services:
  - name: web
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {web}}}]
"""


def _keypair(d, name):
    key = ec.generate_private_key(ec.SECP256R1())
    (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _block(pems):
    out = []
    for pem in pems:
        out.append("      - |\n" + "".join(f"        {line}\n" for line in pem.strip().splitlines()))
    return "".join(out).rstrip("\n")


def request(port, host, path="/", headers=()):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("host", host)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


class Preview:
    def __init__(self, tmp_path):
        self.stack = ExitStack()
        self.dir = tmp_path / "specs"
        self.dir.mkdir()
        self.keys = tmp_path
        self.pems = {n: _keypair(tmp_path, n) for n in ("k1", "k2", "rogue")}
        self.web = self.stack.enter_context(SampleApp("web-v1"))
        self.web1 = self.stack.enter_context(SampleApp("web-pr-1"))
        self.web2 = self.stack.enter_context(SampleApp("web-pr-2"))
        self.write_baseline(["k1"])
        (self.dir / "pr-1.yaml").write_text(sandbox("pr-1", ("web", self.web1.port)))
        (self.dir / "pr-2.yaml").write_text(sandbox("pr-2", ("web", self.web2.port)))
        self.server = self.stack.enter_context(Server([self.dir]))
        self.port, admin = free_port(), free_port()
        boot = ads_bootstrap(None, "127.0.0.1", self.server.xds_port, admin_port=admin, node_id="edge-1",
                             edge_listen=("127.0.0.1", self.port))
        self.edge = self.stack.enter_context(Envoy(dump(to_dict(boot)), admin, name="edge"))
        wait_until(lambda: request(self.port, "shop.example.test")[0] == 200, 20, what="the edge configured")

    def write_baseline(self, names):
        text = BASELINE.format(keys=_block([self.pems[n] for n in names]), web=self.web.port)
        tmp = self.dir / "baseline.yaml.tmp~"
        tmp.write_text(text)
        os.replace(tmp, self.dir / "baseline.yaml")

    def link(self, key, signing="k1", ttl="8h", now=None, base=None):
        args = [MESHFORGE, "preview", "link", "--routing-key", key, "--ttl", ttl, "--signing-key",
                str(self.keys / f"{signing}.key")]
        args += ["--base-url", base] if base else ["--preview-domain", "preview.example.test"]
        if now is not None:
            args += ["--now", now.isoformat()]
        r = subprocess.run(args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def token(self, key, **kw):
        return self.link(key, **kw).split(f"{TOKEN_PARAM}=", 1)[1]

    def get(self, host, path="/", headers=()):
        return request(self.port, host, path, headers)

    def name_at(self, host, token, path="/"):
        status, _, body = self.get(host, path, [("authorization", f"Bearer {token}")])
        return json.loads(body)["name"] if status == 200 else status


@pytest.fixture(scope="module")
def preview(tmp_path_factory):
    p = Preview(tmp_path_factory.mktemp("preview"))
    try:
        yield p
    finally:
        p.stack.close()


PR1 = "pr-1.preview.example.test"


def test_without_a_token_a_preview_host_answers_401_with_a_page_that_says_why(preview):
    status, headers, body = preview.get(PR1)
    assert status == 401
    assert "needs a signed link" in body and "meshforge preview link" in body
    assert headers["www-authenticate"] == 'Bearer realm="meshforge-preview"'


def test_the_public_host_is_unaffected(preview):
    status, _, body = preview.get("shop.example.test")
    assert status == 200 and json.loads(body)["name"] == "web-v1"


def test_a_link_becomes_a_cookie_for_its_host_and_the_page_and_its_assets_load(preview):
    url = preview.link("pr-1")
    assert url.startswith(f"https://{PR1}/?{TOKEN_PARAM}=")
    token = url.split("=", 1)[1]
    status, headers, _ = preview.get(PR1, f"/cart?{TOKEN_PARAM}={token}")
    assert status == 302
    assert headers["location"] == f"http://{PR1}/cart"  # the same page without the token
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={token};") and "HttpOnly" in cookie and "Secure" in cookie \
        and "SameSite=Lax" in cookie and "Domain" not in cookie  # for this host only
    jar = [("cookie", f"theme=dark; {COOKIE}={token}")]
    for path in ("/cart", "/static/app.js", "/api/items?x=1"):
        status, _, body = preview.get(PR1, path, jar)
        assert status == 200 and json.loads(body)["name"] == "web-pr-1", (path, status, body)
        assert json.loads(body)["key"] == "pr-1"
    assert preview.name_at(PR1, token) == "web-pr-1"  # an API client: the bearer header


def test_tokens_that_are_not_this_hosts_are_refused(preview):
    now = datetime.now(timezone.utc)
    expired = preview.token("pr-1", ttl="30m", now=now - timedelta(hours=1))
    other_key = preview.token("pr-2")
    unknown_signer = preview.token("pr-1", signing="rogue")
    too_long = preview.token("pr-1", ttl="7d")  # the Baseline's maxTTL is 2d
    good = preview.token("pr-1")
    head, payload, sig = good.split(".")
    tampered_sig = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = "meshforge-preview:pr-2"
    forged = f"{head}.{base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b'=').decode()}.{sig}"

    def unsigned(alg):
        h = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).rstrip(b"=").decode()
        return f"{h}.{payload}."

    for name, token in [("expired", expired), ("another key's", other_key), ("unknown signer", unknown_signer),
                        ("longer than maxTTL", too_long), ("tampered signature", tampered_sig),
                        ("tampered claims", forged), ("alg none", unsigned("none")), ("alg HS256", unsigned("HS256")),
                        ("garbage", "not-a-token")]:
        assert preview.name_at(PR1, token) == 401, name
        status, _, _ = preview.get(PR1, "/", [("cookie", f"{COOKIE}={token}")])
        assert status == 401, name
    assert preview.name_at(PR1, good) == "web-pr-1"
    # pr-2's token opens pr-2's host
    assert preview.name_at("pr-2.preview.example.test", other_key) == "web-pr-2"


def test_a_link_parameter_that_is_no_token_sets_no_cookie(preview):
    for value in ("a;b", "x%3B%20Domain%3Dexample.test", preview.token("pr-2")):
        status, headers, _ = preview.get(PR1, f"/?{TOKEN_PARAM}={value}")
        assert status == 401 and "set-cookie" not in headers, value


def test_an_unknown_preview_host_tells_nothing_without_a_link(preview):
    assert preview.get("nobody.preview.example.test")[0] == 401  # not 404: which keys exist stays unknown
    status, _, body = preview.get("nobody.preview.example.test", "/", [("authorization",
                                                                         f"Bearer {preview.token('pr-1')}")])
    assert status == 404 and "no active sandbox" in body


def test_rotating_the_public_keys_revokes_the_old_links(preview):
    old, new = preview.token("pr-1", signing="k1"), preview.token("pr-1", signing="k2")
    assert preview.name_at(PR1, old) == "web-pr-1" and preview.name_at(PR1, new) == 401
    preview.write_baseline(["k1", "k2"])  # the rollover: both accepted at once
    wait_until(lambda: preview.name_at(PR1, new) == "web-pr-1", 15, what="k2 accepted")
    assert preview.name_at(PR1, old) == "web-pr-1"
    preview.write_baseline(["k2"])  # k1 retired: every link it signed is revoked
    wait_until(lambda: preview.name_at(PR1, old) == 401, 15, what="k1 revoked")
    assert preview.name_at(PR1, new) == "web-pr-1"
    preview.write_baseline(["k1"])
    wait_until(lambda: preview.name_at(PR1, old) == "web-pr-1", 15, what="back to k1")


def test_not_before_revokes_the_keys_links_issued_before_it(preview):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    before = preview.token("pr-1", now=now - timedelta(minutes=10))
    other = preview.token("pr-2", now=now - timedelta(minutes=10))
    assert preview.name_at(PR1, before) == "web-pr-1"
    text = sandbox("pr-1", ("web", preview.web1.port)).replace(
        "spec:\n", f"spec:\n  notBefore: \"{(now - timedelta(minutes=1)).isoformat()}\"\n", 1)
    (preview.dir / "pr-1.yaml").write_text(text)
    wait_until(lambda: preview.name_at(PR1, before) == 401, 15, what="pr-1's older links revoked")
    assert preview.name_at(PR1, preview.token("pr-1")) == "web-pr-1"  # a new link works
    assert preview.name_at("pr-2.preview.example.test", other) == "web-pr-2"  # another key's are untouched


@pytest.mark.parametrize("args, message", [
    (["--routing-key", "PR", "--preview-domain", "p.test"], "is not a routing key"),
    (["--routing-key", "pr-1", "--ttl", "forever", "--preview-domain", "p.test"], "is not a duration"),
    (["--routing-key", "pr-1"], "give --base-url URL or --preview-domain DOMAIN"),
    (["--routing-key", "pr-1", "--base-url", "ftp://x/"], "is not an http(s) URL"),
    (["--routing-key", "pr-1", "--preview-domain", "p.test", "--signing-key", "/nonexistent"], "No such file"),
])
def test_preview_link_usage_errors(tmp_path, args, message):
    if "--signing-key" not in args:
        _keypair(tmp_path, "k")
        args = [*args, "--signing-key", str(tmp_path / "k.key")]
    r = subprocess.run([MESHFORGE, "preview", "link", *args], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_signing_key_that_is_not_p256_is_refused(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "k.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    r = subprocess.run([MESHFORGE, "preview", "link", "--routing-key", "pr-1", "--preview-domain", "p.test",
                        "--signing-key", str(tmp_path / "k.key")], capture_output=True, text=True)
    assert r.returncode == 2 and "not an EC P-256 private key" in r.stderr


def test_the_readme_commands_make_a_key_and_a_link_it_verifies(tmp_path):
    """The README's two lines, as pasted: openssl makes the key pair, `preview link` a token that the printed
    public key verifies, for that key only, expiring in 8 hours."""
    import re
    import shutil
    from pathlib import Path

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (Debian: openssl; .ci/run installs it)")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("#### Preview links that are safe to share", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1].strip().splitlines()
    assert block[0].startswith("openssl ") and block[1].startswith("meshforge preview link ")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    pub = subprocess.run(block[0], shell=True, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert pub.returncode == 0 and pub.stdout.startswith("-----BEGIN PUBLIC KEY-----"), pub.stderr
    out = subprocess.run(block[1], shell=True, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith(f"https://cart-pr-42.preview.example.com/?{TOKEN_PARAM}=")
    head, payload, sig = url.split("=", 1)[1].split(".")
    key = serialization.load_pem_public_key(pub.stdout.encode())
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    key.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
               f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))  # raises when it does not verify
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == "meshforge-preview:cart-pr-42" and claims["exp"] - claims["iat"] == 8 * 3600


def test_signed_without_public_keys_is_an_error_at_its_place(tmp_path):
    (tmp_path / "b.yaml").write_text(BASELINE.format(keys="", web=8080).replace("      publicKeys:\n\n", "\n"))
    r = subprocess.run([MESHFORGE, "validate", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "MF232" in r.stdout + r.stderr and "names no publicKeys" in r.stdout + r.stderr, \
        r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
