"""`meshforge controller`: sandboxes as environments on a real cluster.

Input: a Kubernetes API server (watched: meshforge's kinds, Services, workloads, ConfigMaps,
EndpointSlices, the user's VirtualServices and HTTPRoutes, and the objects meshforge owns). Output:
server-side applied objects (field manager `meshforge`): every fork's workload and Service, and the
routing objects of the chosen backend for the routing keys that are live — or, with `--xds-address`,
xDS served to sidecars from the same model, EndpointSlices as EDS; statuses and Events.

One reconcile, after every batch of changes and on a timer (expiry, readiness deadline, resync):
1. compile every input but objects being deleted (`inputs.ClusterInputs`: the same path as files);
   an object that fails is left out, with its diagnostics in its status;
2. readiness (`readiness`): a key goes live only when every fork has a ready endpoint (make-before-
   break: never routed to a fork that cannot answer); a live key whose fork loses them goes back to the
   baseline, or stays (`spec.onUnready: KeepRouting`);
3. the workloads of every active sandbox are applied, then the routes of the live keys (or the xDS
   snapshot published); then what meshforge owns (`ownership` labels) and no longer wants is deleted,
   routes before workloads; nothing without meshforge's label is ever touched;
4. finalizers (`meshforge.dev/cleanup`): added to every object; removed from one being deleted once its
   children are gone; statuses and Events written.
Only the leader writes (`leader`); every replica can serve xDS. A controller started after downtime
catches up by the same reconcile: children of objects deleted or expired meanwhile are found by their
labels and removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import backends
from ..diagnostics import Diagnostic, Diagnostics
from ..model import Model
from ..ownership import is_managed
from . import kube, readiness, status
from .inputs import CR_KINDS, INPUT_KINDS, ClusterInputs, Key, key_of
from .leader import LeaderElector

log = logging.getLogger("meshforge.controller")

FINALIZER = "meshforge.dev/cleanup"
ON_UNREADY = ("Baseline", "KeepRouting")
ROUTING_KINDS = {"istio": (kube.VIRTUAL_SERVICE, kube.DESTINATION_RULE, kube.SERVICE_ENTRY),
                 "gateway-api": (kube.HTTP_ROUTE, kube.GRPC_ROUTE, kube.REFERENCE_GRANT, kube.ENDPOINT_SLICE,
                                 kube.SERVICE)}
WORKLOAD_KINDS = (kube.DEPLOYMENT, kube.STATEFUL_SET, kube.SERVICE)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _message(d: Diagnostic) -> str:
    where = f" (at {d.span.pointer})" if d.span is not None and d.span.pointer else ""
    return f"{d.code}: {d.message}{where}" + (f"; {d.hint}" if d.hint else "")


@dataclass
class Options:
    backend: str | None = "istio"  # None: no routing objects (xDS mode serves routes itself)
    namespaces: tuple[str, ...] = ()  # watched namespaces; () = all
    ready_timeout: float = 300.0  # seconds a fork may take to have a ready endpoint before its status says so
    resync: float = 60.0  # reconcile at least this often


class Controller:
    def __init__(self, cluster: kube.Cluster, options: Options, elector: LeaderElector | None = None,
                 xds=None):
        self.cluster, self.options, self.elector, self.xds = cluster, options, elector, xds
        self.inputs = ClusterInputs()
        self.crs: dict[Key, dict] = {}  # meshforge's objects, as the API server has them (status included)
        self.slices: dict[Key, dict] = {}
        self.owned: dict[Key, dict] = {}  # objects labelled managed-by meshforge, of the kinds it writes
        self.applied: dict[Key, str] = {}  # what meshforge last applied: identity -> digest
        self.apply_errors: dict[str, list[str]] = {}  # owner (sandbox or route group) -> what failed to apply
        self.live: set[str] = set()  # routing keys whose routes are live
        self.waiting_since: dict[tuple[Key, int], float] = {}  # (sandbox, generation) not ready -> since
        self.dirty = asyncio.Event()
        self.kinds: list[kube.Kind] = []
        self.synced: set[kube.Kind] = set()
        self.reconciles = 0
        self.model: Model | None = None  # the last model routed (gated), for xDS and tests
        self._next: float | None = None
        self._retry = 0.0  # seconds until a failed write is tried again (doubling, up to 30)

    # -- watching ---------------------------------------------------------------------------
    def _store(self, kind: kube.Kind, event: str, obj: dict) -> None:
        k = key_of(obj)
        if self.options.namespaces and k[2] not in self.options.namespaces:
            return
        gone = event == "DELETED"
        if kind in CR_KINDS:
            (self.crs.pop(k, None) if gone else self.crs.__setitem__(k, obj))
        if kind == kube.ENDPOINT_SLICE:
            (self.slices.pop(k, None) if gone else self.slices.__setitem__(k, obj))
        if kind in INPUT_KINDS:
            (self.inputs.remove(obj) if gone else self.inputs.put(obj))
        if is_managed((obj.get("metadata") or {}).get("labels")):
            (self.owned.pop(k, None) if gone else self.owned.__setitem__(k, obj))
        elif k in self.owned:
            self.owned.pop(k, None)  # its label was taken off: no longer meshforge's

    def _forget(self, kind: kube.Kind) -> None:
        for store in (self.crs, self.slices, self.owned):
            for k in [k for k in store if (k[0], k[1]) == kind.key]:
                del store[k]
        for k in [k for k in self.inputs.objects if (k[0], k[1]) == kind.key]:
            self.inputs.remove(self.inputs.objects[k])

    async def _follow(self, kind: kube.Kind) -> None:
        """List, then watch from the list's resourceVersion; list again whenever the watch ends badly."""
        while True:
            try:
                items, rv = await self.cluster.list(kind)
                self._forget(kind)
                for obj in items:
                    self._store(kind, "ADDED", obj)
                self.synced.add(kind)
                self.dirty.set()
                async for event, obj in self.cluster.watch(kind, rv):
                    if event in ("ADDED", "MODIFIED", "DELETED"):
                        self._store(kind, event, obj)
                        self.dirty.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("watch of %s ended (%s); listing again", kind, e)
                await asyncio.sleep(1.0)

    async def _kinds(self) -> list[kube.Kind]:
        wanted = list(dict.fromkeys([*INPUT_KINDS, kube.ENDPOINT_SLICE, *WORKLOAD_KINDS,
                                     *ROUTING_KINDS.get(self.options.backend or "", ())]))
        out = []
        for kind in wanted:
            try:
                if await self.cluster.served(kind):
                    out.append(kind)
                elif kind in CR_KINDS:
                    raise SystemExit(f"the API server does not serve {kind.plural}.{kind.group}: apply deploy/crds/ "
                                     "first")
                else:
                    log.info("%s is not served by this API server: not watched", kind)
            except SystemExit:
                raise
            except Exception as e:
                raise SystemExit(f"cannot reach the API server: {e}") from None
        return out

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        self.kinds = await self._kinds()
        tasks = [asyncio.ensure_future(self._follow(k)) for k in self.kinds]
        if self.elector is not None:
            tasks.append(asyncio.ensure_future(self.elector.run()))
            tasks.append(asyncio.ensure_future(self._on_leadership()))
        try:
            while True:
                timeout = self.options.resync if self._next is None else max(0.0, self._next - time.monotonic())
                await kube.sleep_until(self.dirty, min(timeout, self.options.resync))
                self.dirty.clear()
                if len(self.synced) < len(self.kinds):
                    continue  # never act on a partial picture: pruning would delete what is not listed yet
                await asyncio.sleep(0.05)  # let a burst of events land together
                self.dirty.clear()
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("reconcile failed; trying again")
                    self._next = time.monotonic() + 2.0
        finally:
            for t in tasks:
                t.cancel()
            if self.elector is not None:
                await self.elector.release()

    async def _on_leadership(self) -> None:
        while True:
            await self.elector.changed.wait()
            self.elector.changed.clear()
            self.applied.clear()  # a new leader applies everything once
            self.dirty.set()

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    async def reconcile(self) -> None:
        self.reconciles += 1
        t0 = time.perf_counter()
        clock = datetime.now(timezone.utc)
        deleting = {k for k, o in self.crs.items() if (o.get("metadata") or {}).get("deletionTimestamp")}
        compiled = self.inputs.compile(clock, skip=deleting)
        model = compiled.model
        invalid: dict[Key, list[str]] = {k: [_message(d) for d in items] for k, items in compiled.left_out.items()}
        if model is None:
            log.error("the cluster's inputs do not compile: %s",
                      "; ".join(d.to_text() for d in compiled.diagnostics.errors()[:5]))
            await self._statuses(None, invalid, {}, set(), deleting)
            self._schedule(None)
            return

        t_compile = time.perf_counter()
        eps = readiness.Endpoints(list(self.slices.values()))
        # the cluster's Services: the baseline's, and those meshforge made or is about to make (forks')
        services = {(k[2], k[3]) for k in [*self.inputs.objects, *self.owned] if k[1] == "Service" and k[0] == ""}
        services |= {(o.namespace, o.name) for o in model.generated if o.kind == "Service"}
        backend = backends.get(self.options.backend or "xds")
        refused: dict[str, list[str]] = {}
        for kr in model.keys:
            d = Diagnostics()
            backends.check(model, backend, d, [kr.key])
            if d.has_errors:
                refused[kr.key] = [_message(x) for x in d.errors()]
        ready = {kr.key: readiness.fork_ready(model, kr, eps, services) for kr in model.keys}
        keep = self._keep_routing(model)
        live = {k for k, r in ready.items() if k not in refused and (r.ok or (k in self.live and k in keep))}
        gated = readiness.gate(model, live)
        self.model = gated

        programmed = live
        if self.xds is not None:
            self.xds.compiler.model = readiness.bind_endpoints(gated, eps, services)
            if self.xds.server is None:  # the first model: start serving with it
                await self.xds.start()
                published = self.xds.cache.snapshot is not None
            else:
                published = await self.xds.reload("the cluster changed")
            if not published:
                programmed = set()
        t_route = time.perf_counter()
        if self.leading:
            await self._apply(model, gated)
            await self._finalizers(deleting)
        t_apply = time.perf_counter()
        self.live = live
        await self._statuses(model, invalid, ready, programmed, deleting, refused)
        log.debug("reconcile %d: compile %.1f ms, readiness and xDS %.1f ms, render and apply %.1f ms, status %.1f ms",
                  self.reconciles, (t_compile - t0) * 1000, (t_route - t_compile) * 1000, (t_apply - t_route) * 1000,
                  (time.perf_counter() - t_apply) * 1000)
        self._schedule(model.next_expiry)
        if self.apply_errors:  # a write failed (a namespace not there yet, a webhook down): try again soon
            self._retry = min(self._retry * 2, 30.0) if self._retry else 1.0
            self._next = min(self._next or float("inf"), time.monotonic() + self._retry)
        else:
            self._retry = 0.0

    def _keep_routing(self, model: Model) -> set[str]:
        out = set()
        for sb in model.sandboxes:
            cr = self.crs.get(("meshforge.dev", "Sandbox", sb.namespace, sb.name))
            if cr is not None and ((cr.get("spec") or {}).get("onUnready") == "KeepRouting"):
                out.add(sb.key)
        return out

    def _schedule(self, expiry: datetime | None) -> None:
        times = []
        if expiry is not None:
            times.append(time.monotonic() + max(0.0, (expiry - datetime.now(timezone.utc)).total_seconds()) + 0.01)
        for since in self.waiting_since.values():
            times.append(since + self.options.ready_timeout + 0.01)
        future = [t for t in times if t > time.monotonic() - 1]
        self._next = min(future) if future else None

    # -- writing ----------------------------------------------------------------------------
    def _desired(self, model: Model, gated: Model) -> dict[Key, dict]:
        out: dict[Key, dict] = {}
        files = backends.get("kubernetes").render(model, Diagnostics())
        if self.options.backend:
            d = Diagnostics()
            files += backends.get(self.options.backend).render(gated, d)
        for r in files:
            if r.is_input or r.identity is None or not isinstance(r.body, dict):
                continue  # a user's own object (merged routes included) is never written
            out[key_of(r.body)] = r.body
        return out

    def _failed(self, body: dict, why: str) -> None:
        labels = (body.get("metadata") or {}).get("labels") or {}
        owner = labels.get("meshforge.dev/sandbox") or labels.get("meshforge.dev/route-group") or ""
        self.apply_errors.setdefault(owner, []).append(f"{body.get('kind')} {key_of(body)[2]}/{key_of(body)[3]}: {why}")

    async def _apply(self, model: Model, gated: Model) -> bool:
        desired = self._desired(model, gated)
        order = sorted(desired, key=lambda k: (k[1] not in ("Deployment", "StatefulSet", "Service"), k))
        ok = True
        self.apply_errors = {}
        for k in order:
            body = desired[k]
            if self.options.namespaces and k[2] not in self.options.namespaces:
                self._failed(body, f"namespace {k[2]} is not one the controller watches (--namespace)")
                continue
            digest = _digest(body)
            if self.applied.get(k) == digest and k in self.owned:
                continue
            if not self.leading:
                return False
            try:
                await self.cluster.apply(body)
                self.applied[k] = digest
                log.debug("applied %s %s/%s", k[1], k[2], k[3])
            except Exception as e:
                ok = False
                self._failed(body, str(e))
                log.error("applying %s %s/%s: %s", k[1], k[2], k[3], e)
        gone = [k for k in self.owned if k not in desired]
        gone.sort(key=lambda k: (k[1] in ("Deployment", "StatefulSet", "Service"), k))  # routes first
        for k in gone:
            if not self.leading:
                return False
            kind = kube.kind_of(self.owned[k])
            try:
                await self.cluster.delete(kind, k[3], k[2])
                self.applied.pop(k, None)
                self.owned.pop(k, None)
                log.info("deleted %s %s/%s (no longer wanted)", k[1], k[2], k[3])
            except Exception as e:
                ok = False
                log.error("deleting %s %s/%s: %s", k[1], k[2], k[3], e)
        return ok

    async def _finalizers(self, deleting: set[Key]) -> None:
        for k, cr in list(self.crs.items()):
            meta = cr.get("metadata") or {}
            has = FINALIZER in (meta.get("finalizers") or [])
            if k in deleting:
                if has and not self._children_left(k):
                    await self._set_finalizer(cr, False)
            elif not has:
                await self._set_finalizer(cr, True)

    def _children_left(self, k: Key) -> bool:
        label = {"Sandbox": "meshforge.dev/sandbox", "RouteGroup": "meshforge.dev/route-group"}.get(k[1])
        if label is None:
            return False
        return any(((o.get("metadata") or {}).get("labels") or {}).get(label) == k[3] for o in self.owned.values())

    async def _set_finalizer(self, cr: dict, on: bool) -> None:
        meta = cr.get("metadata") or {}
        body = {"apiVersion": cr["apiVersion"], "kind": cr["kind"],
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                             "finalizers": [FINALIZER] if on else []}}
        try:
            await self.cluster.apply(body)
        except Exception as e:
            if "not found" not in str(e).lower():
                log.error("finalizer of %s %s/%s: %s", cr["kind"], meta.get("namespace"), meta.get("name"), e)

    async def _statuses(self, model: Model | None, invalid: dict[Key, list[str]], ready: dict,
                        programmed: set[str], deleting: set[Key], refused: dict | None = None) -> None:
        refused = refused or {}
        now = _now()
        clock = time.monotonic()
        waiting = {}
        for k, cr in self.crs.items():
            if k in deleting:
                continue
            gen = int((cr.get("metadata") or {}).get("generation") or 0)
            errs = invalid.get(k, [])
            if model is None and not errs:
                errs = ["the cluster's meshforge objects do not compile together: see the controller's log"]
            if k[1] == "Sandbox":
                sb = model.sandbox(k[3]) if model is not None else None
                if sb is not None and sb.namespace != k[2]:
                    sb = None
                key = sb.key if sb is not None else None
                errs = errs + (refused.get(key, []) if key else [])
                r = ready.get(key) if key else None
                if not errs and sb is not None and not sb.expired and r is not None and not r.ok:
                    waiting[(k, gen)] = self.waiting_since.get((k, gen), clock)
                since = waiting.get((k, gen))
                edge = model.edge if model is not None else None
                url = f"http://{edge.preview_host(key)}/" if key and edge is not None and edge.preview_domain else None
                # what failed for this sandbox, and what failed that no one sandbox owns (a shared ReferenceGrant)
                failed = "; ".join(self.apply_errors.get(k[3], []) + self.apply_errors.get("", []))
                obs = status.sandbox(gen, invalid=errs, expired=bool(sb and sb.expired), ready=bool(r and r.ok),
                                     why=r.why if r is not None else "the sandbox forks nothing the mesh routes",
                                     live=bool(key and key in programmed) and not failed, key=key, preview_url=url,
                                     timed_out=since is not None and clock - since > self.options.ready_timeout,
                                     failed=failed)
            elif k[1] == "RouteGroup":
                key = (cr.get("spec") or {}).get("routingKey") or k[3]
                obs = status.simple(gen, errs, key)
            else:
                obs = status.simple(gen, errs)
            body, changed = status.build(obs, cr.get("status"), now)
            if status.same(cr.get("status"), body) or not self.leading:
                continue
            try:
                await self.cluster.apply({"apiVersion": cr["apiVersion"], "kind": cr["kind"],
                                          "metadata": {"name": k[3], "namespace": k[2]}, "status": body}, status=True)
            except Exception as e:
                log.error("status of %s %s/%s: %s", k[1], k[2], k[3], e)
                continue
            for c in changed:
                if c.type in ("Ready", "Expired") or c.reason == "NotReadyInTime":
                    await self._event(cr, c)
        self.waiting_since = waiting

    async def _event(self, cr: dict, c: status.Condition) -> None:
        meta = cr.get("metadata") or {}
        now = _now()
        warning = c.reason in ("Invalid", "NotReadyInTime")
        reason = c.reason if c.type != "Ready" or not c.status else "Ready"
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
                "involvedObject": {"apiVersion": cr["apiVersion"], "kind": cr["kind"], "name": meta["name"],
                                   "namespace": meta.get("namespace"), "uid": meta.get("uid")},
                "reason": reason, "message": (c.message or f"{c.type} is {c.status}")[:1024],
                "type": "Warning" if warning else "Normal", "source": {"component": "meshforge"},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            await self.cluster.create(body)
        except Exception as e:
            log.debug("event: %s", e)
