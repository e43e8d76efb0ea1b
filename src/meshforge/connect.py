"""`meshforge connect`: one service of the shared environment, run on this laptop, for one routing key (CONTRACT §5.4).

Input: the service, the key, where the local process listens (`--to`), where the tunnel node takes laptops (`--via`)
and the laptop's certificate. Output: a running Envoy that holds a reverse tunnel to the tunnel node as node
`<key>.<service>` (`model.tunnel_node`), so that requests carrying the key for that service anywhere in the mesh come
back over it to the local process; status lines until Ctrl-C. The laptop's Envoy listens on nothing reachable from
outside (its admin port is on loopback): the cluster can reach the laptop only over the connection the laptop opened.

Leaving, in this order: the Envoy drains (HTTP/2 GOAWAY over the tunnel: the tunnel node sends nothing new over it),
requests under way finish (up to `DRAIN_SECONDS`), then Envoy stops and the tunnel closes. From then on the tunnel
node sends the key to the baseline (its route retries the "no laptop" answer there), so no request fails by it.
`--env-from` reads the baseline workload's environment from the manifests, so the local process can be started with
the settings its in-cluster copy has.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostics
from .emit.xds.tunnel import LaptopTls, laptop_bootstrap
from .envoyproc import Envoy, free_port
from .model import DEFAULT_NAMESPACE, tunnel_node

DRAIN_SECONDS = 5.0  # at most this long for requests under way when leaving
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Plan:
    service: str  # service id, name.namespace
    key: str
    via: tuple[str, int]
    to: tuple[str, int]
    tls: LaptopTls
    http2: bool = False
    admin_port: int = 0  # 0: a free one

    @property
    def node(self) -> str:
        return tunnel_node(self.key, self.service)


def service_id(service: str, namespace: str | None) -> str:
    return service if "." in service else f"{service}.{namespace or DEFAULT_NAMESPACE}"


class Laptop:
    """The laptop's Envoy, with what its admin says about the tunnel."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.admin_port = plan.admin_port or free_port()
        boot = laptop_bootstrap(plan.node, plan.via, plan.to, plan.tls, self.admin_port, plan.http2)
        from .emit.xds.backend import to_dict

        self.envoy = Envoy(json.dumps(to_dict(boot)), self.admin_port, name="the laptop's Envoy")

    def start(self) -> None:
        self.envoy.start()

    def running(self) -> bool:
        return self.envoy.proc is not None and self.envoy.proc.poll() is None

    def stats(self) -> dict[str, int]:
        try:
            text = self.envoy.admin("/stats?filter=^http\\.meshforge_laptop\\.downstream_(cx|rq)_(active|total)$", 1.0)
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name.rsplit(".", 1)[-1]] = int(value)
        return out

    def attached(self, stats: dict[str, int]) -> bool:
        """The tunnel node took the tunnel: the connection it sends requests over is open."""
        return stats.get("downstream_cx_active", 0) > 0

    def leave(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Drain (GOAWAY over the tunnel), let requests under way finish, then stop."""
        if self.running():
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/drain_listeners?graceful&skip_exit",
                                             method="POST")
                urllib.request.urlopen(req, timeout=1.0).read()
                deadline = time.monotonic() + drain_seconds
                time.sleep(0.2)  # the tunnel node reads the GOAWAY before the next request
                while time.monotonic() < deadline and self.stats().get("downstream_rq_active", 0) > 0:
                    time.sleep(0.05)
            except OSError:
                pass
        self.envoy.stop()


def run(plan: Plan, say, should_stop, restart_limit: int = 5) -> int:
    """Hold the tunnel until `should_stop()`; `say(line)` reports each change of state. Envoy reconnects a lost
    tunnel by itself; an Envoy that exits is started again (up to `restart_limit` times in a row)."""
    laptop = Laptop(plan)
    where = f"{plan.to[0]}:{plan.to[1]}"
    try:
        laptop.start()
    except (RuntimeError, TimeoutError) as e:
        say(f"error: the laptop's Envoy did not start: {e}")
        laptop.envoy.stop()
        return 1
    say(f"connecting to the tunnel node at {plan.via[0]}:{plan.via[1]} as {plan.node} ...")
    state, restarts, served = None, 0, 0
    waited_since = time.monotonic()
    try:
        while not should_stop():
            if not laptop.running():
                if restarts >= restart_limit:
                    say(f"error: the laptop's Envoy keeps exiting: {laptop.envoy.log()[-600:]}")
                    return 1
                restarts += 1
                say("the laptop's Envoy exited; starting it again")
                laptop = Laptop(plan)
                laptop.start()
                continue
            stats = laptop.stats()
            now = laptop.attached(stats)
            if now != state:
                if now:
                    restarts = 0
                    say(f"attached: requests with key {plan.key} for {plan.service} now reach {where}")
                elif state:
                    say("tunnel lost: the key reaches the baseline until it is back (reconnecting ...)")
                waited_since = time.monotonic()
                state = now
            elif not now and time.monotonic() - waited_since > 10:
                say(f"still not attached: is {plan.via[0]}:{plan.via[1]} the tunnel node's --accept-address, does a "
                    f"Sandbox fork {plan.service} to {{local: {{}}}} for key {plan.key}, and does this certificate carry "
                    "its owner?")
                waited_since = time.monotonic()
            total = stats.get("downstream_rq_total", 0)
            if now and total != served:
                say(f"{total} request{'s' if total != 1 else ''} served")
                served = total
            time.sleep(POLL_SECONDS)
    finally:
        say("leaving: draining the tunnel ...")
        laptop.leave()
        say(f"detached: key {plan.key} for {plan.service} reaches the cluster's version again")
    return 0


def env_from(paths: list[str], service: str, container: str | None = None,
             default_namespace: str = DEFAULT_NAMESPACE) -> tuple[list[tuple[str, str]], list[str]]:
    """The environment of the baseline workload of `service` (name.namespace) as its container sees it, from the
    manifests in `paths`: ([(name, value)] in order, notes). Values from Secrets are left out (named in the notes):
    a terminal is no place for credentials. Objects that name no namespace are in `default_namespace`."""
    from .source import load_paths
    from .spec import manifests as k8s

    diags = Diagnostics()
    docs = load_paths(paths, diags)
    if diags.has_errors:
        raise ValueError("\n".join(d.to_text() for d in diags.errors()))
    name, _, ns = service.partition(".")
    svc = next((d for d in docs if d.kind == "Service" and isinstance(d.data.get("metadata"), dict)
                and d.data["metadata"].get("name") == name
                and d.data["metadata"].get("namespace", default_namespace) == ns), None)
    if svc is None:
        raise ValueError(f"no Service {name} in namespace {ns} among {', '.join(paths)}")
    selector = (svc.data.get("spec") or {}).get("selector") if isinstance(svc.data.get("spec"), dict) else None
    workloads = [d for d in docs if (d.api_version, d.kind) in k8s.WORKLOAD_KINDS
                 and isinstance(d.data.get("metadata"), dict)
                 and d.data["metadata"].get("namespace", default_namespace) == ns
                 and k8s.selects(selector, k8s.pod_labels(d, Diagnostics()))]
    if len(workloads) != 1:
        found = ", ".join(f"{w.kind} {w.data['metadata'].get('name')}" for w in workloads) or "none"
        raise ValueError(f"Service {service} selects {len(workloads)} workloads ({found}): --env-from needs exactly one")
    configs = k8s.configs(docs)
    chosen = [(base, c) for base, c in k8s.containers(workloads[0]) if "/initContainers/" not in base
              and (container is None or c.get("name") == container)]
    if not chosen:
        raise ValueError(f"{workloads[0].kind} {workloads[0].data['metadata'].get('name')} has no container "
                         f"{container!r}" if container else "the workload has no container")
    base, c = chosen[0]
    env, where, partial = k8s.container_env(c, base, ns, configs)
    notes = list(partial)
    out = []
    for k, v in env.items():
        if where[k][1].startswith("Secret"):
            notes.append(f"{k} comes from {where[k][1]}: left out")
            continue
        out.append((k, v))
    return out, notes


def shell_line(name: str, value: str) -> str:
    """`export NAME='value'` for a POSIX shell."""
    return f"export {name}='" + value.replace("'", "'\\''") + "'"


def existing_file(path: str, option: str) -> str:
    """The absolute path of a file the laptop's Envoy reads (it runs in another directory)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{option} {path}: no such file")
    return str(p.resolve())
