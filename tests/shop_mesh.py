"""web -> cart -> pay on real Envoys, configured live by a real `meshforge serve`: the set-up the serve, edge and
doctor tests share (one copy instead of three).

Each app is a SampleApp that calls its next hop through its own sidecar; the baseline's endpoints are the apps
named `<service>-v1`; every other app is a sandbox's version, forked by an endpoint sandbox of the same name
unless the test writes its own. `chain()` calls web directly (the test is web's client) and returns the name
of each hop that answered.
"""

from __future__ import annotations

from contextlib import ExitStack

from meshforge.emit.xds.backend import dump, to_dict
from meshforge.emit.xds.bootstrap import ads_bootstrap
from meshforge.envoyproc import Envoy, free_port

from .envoy_harness import SampleApp, http_get
from .serve_harness import Server, Sidecar
from .specs import sandbox

NEXT = {"web": "cart", "cart": "pay", "pay": None}


def baseline(ports: dict[str, int], edge: str = "") -> str:
    """The Baseline: web, cart and pay in namespace shop at 127.0.0.1:<ports[service]>; `edge`: an `edge:` block
    (its lines indented for spec)."""
    services = "".join(f"""\
  - name: {svc}
    ports: [{{name: http, port: 80}}]
    endpoints: [{{address: 127.0.0.1, port: {ports[svc]}}}]
    dependsOn: [{nxt or ""}]
""" for svc, nxt in NEXT.items())
    return f"""\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: shop}}
spec:
{edge}  services:
{services}"""


def chain_of(answer: dict | None) -> list[str]:
    out = []
    while answer:
        out.append(answer.get("name") or f"HTTP {answer.get('status')}")
        answer = answer.get("next")
    return out


class ShopMesh:
    """`versions`: app name -> (service, keyword arguments for SampleApp); `sandboxes`: sandbox name -> the app it
    forks its service to; `sidecars`: (service, app or None), an app's calls going through that sidecar;
    `edge_listen`: an edge proxy too, listening on that port of 127.0.0.1 (0: a free one)."""

    def __init__(self, tmp_path, versions: dict[str, tuple[str, dict]], sandboxes: dict[str, str],
                 sidecars: list[tuple[str, str | None]], *, delta: bool = False, edge_spec: str = "",
                 edge: bool = False, wait=None):
        self.stack = ExitStack()
        self.dir = tmp_path / "specs"
        self.dir.mkdir()
        self.delta = delta
        self.apps: dict[str, SampleApp] = {}
        self.service_of: dict[str, str] = {}  # app name -> its service
        try:
            for name in ("web-v1", "cart-v1", "pay-v1", *[n for n in versions if not n.endswith("-v1")]):
                svc, kw = versions.get(name, (name.split("-")[0], {}))
                self.apps[name] = self.stack.enter_context(SampleApp(name, next_hop=NEXT[svc], **kw))
                self.service_of[name] = svc
            (self.dir / "baseline.yaml").write_text(
                baseline({s: self.apps[f"{s}-v1"].port for s in NEXT}, edge_spec))
            for sb, app in sandboxes.items():
                (self.dir / f"{sb}.yaml").write_text(sandbox(sb, (self.service_of[app], self.apps[app].port)))
            self.server = self.stack.enter_context(Server([self.dir]))
            self.sidecars: dict[str, Sidecar] = {}
            for svc, app in sidecars:
                sc = self.stack.enter_context(Sidecar(f"{svc}.shop", self.server, delta))
                self.sidecars[app or svc] = sc
                if app is not None:
                    self.apps[app].proxy_port = sc.outbound
            self.edge_port = None
            if edge:
                self.edge_port, admin = free_port(), free_port()
                boot = ads_bootstrap(None, "127.0.0.1", self.server.xds_port, admin_port=admin, node_id="edge-1",
                                     edge_listen=("127.0.0.1", self.edge_port))
                self.edge = self.stack.enter_context(Envoy(dump(to_dict(boot)), admin, name="edge"))
            if wait is not None:
                wait(self)
        except BaseException:
            self.stack.close()
            raise

    def request(self, headers=None) -> dict:
        return http_get(self.apps["web-v1"].port, "web", headers)

    def chain(self, headers=None) -> list[str]:
        return chain_of(self.request(headers))

    def close(self) -> None:
        self.stack.close()
