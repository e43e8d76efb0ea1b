"""Cost of signed preview links (issue 29) per request: the edge checking the token (jwt_authn: ES256 signature,
expiry; RBAC: the audience against the host's key) against the same edge with previewAuth off, same run, same
backend. Two `meshforge serve` + edge Envoy pairs on loopback (real Envoys), 1,000 routing keys each; wrk (1
thread, 8 connections) on one preview host, the signed one with the link's cookie. Prints req/s and latency
p50/p99 per mode, median of interleaved rounds, and the ratios.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from tests.envoy_harness import SampleApp  # noqa: E402
from tests.serve_harness import Server, wait_until  # noqa: E402
from tests.test_preview_auth import BASELINE, _block, request  # noqa: E402

from meshforge.emit.xds.backend import dump, to_dict  # noqa: E402
from meshforge.emit.xds.bootstrap import ads_bootstrap  # noqa: E402
from meshforge.envoyproc import Envoy, free_port  # noqa: E402
from meshforge.preview import COOKIE, sign  # noqa: E402

KEYS = 1000


def setup(stack: ExitStack, d: Path, web: SampleApp, fork: SampleApp, pem: str | None) -> int:
    d.mkdir()
    text = BASELINE.format(keys=_block([pem]) if pem else "", web=web.port)
    if pem is None:
        text = text.replace("    previewAuth:\n      mode: signed\n      maxTTL: 2d\n      publicKeys:\n\n", "")
    (d / "baseline.yaml").write_text(text)
    docs = []
    for i in range(KEYS):
        docs.append(f"apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: pr-{i}, namespace: shop}}\n"
                    f"spec:\n  forks:\n  - service: web\n    to: {{endpoints: [{{address: 127.0.0.1, port: {fork.port}}}]}}\n")
    (d / "sandboxes.yaml").write_text("---\n".join(docs))
    server = stack.enter_context(Server([d]))
    port, admin = free_port(), free_port()
    boot = ads_bootstrap(None, "127.0.0.1", server.xds_port, admin_port=admin, node_id=f"edge-{port}",
                         edge_listen=("127.0.0.1", port))
    stack.enter_context(Envoy(dump(to_dict(boot)), admin, name="edge"))  # --concurrency 1 (envoyproc)
    return port


def wrk(port: int, host: str, headers: dict[str, str], seconds: int) -> tuple[float, float, float]:
    cmd = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-H", f"Host: {host}"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out) or "Socket errors" in out:
        raise RuntimeError(out)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        return float(m[1]) * {"us": 0.001, "ms": 1, "s": 1000}[m[2]]
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), ms("50"), ms("99")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("cannot run: wrk is not installed (Debian: wrk)", file=sys.stderr)
        return 2
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    host = "pr-500.preview.example.test"
    token = sign(key, "pr-500", 3600)
    tmp = Path(tempfile.mkdtemp(prefix="mf-bench-preview-"))
    rows: dict[str, list] = {"previewAuth off": [], "signed (cookie)": []}
    try:
        with ExitStack() as stack:
            web, fork = stack.enter_context(SampleApp("web-v1")), stack.enter_context(SampleApp("web-pr"))
            ports = {"previewAuth off": setup(stack, tmp / "off", web, fork, None),
                     "signed (cookie)": setup(stack, tmp / "signed", web, fork, pem)}
            headers = {"previewAuth off": {}, "signed (cookie)": {"Cookie": f"{COOKIE}={token}"}}
            for mode, port in ports.items():
                hdr = list(headers[mode].items())
                wait_until(lambda: request(port, host, "/", [(k.lower(), v) for k, v in hdr])[0] == 200, 60,
                           what=f"{mode}: the edge configured")
            assert request(ports["signed (cookie)"], host)[0] == 401  # the check is on
            for _ in range(args.rounds):
                for mode, port in ports.items():
                    rows[mode].append(wrk(port, host, headers[mode], args.seconds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(values):
        return sorted(values)[len(values) // 2]
    print(f"{'mode':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   ({KEYS} keys, median of {args.rounds} rounds)")
    m = {}
    for mode, rs in rows.items():
        m[mode] = tuple(med([r[i] for r in rs]) for i in range(3))
        print(f"{mode:18} {m[mode][0]:9.0f} {m[mode][1]:8.3f} {m[mode][2]:8.3f}")
    off, on = m["previewAuth off"], m["signed (cookie)"]
    print(f"signed / off: throughput {on[0] / off[0]:.2f}x, p50 {on[1] / off[1]:.2f}x, p99 {on[2] / off[2]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
