"""Lowering: the resolved `Model` → the model the backends render, through a tuple of passes.

Input: a model from `resolve`. Output: a model whose destinations are all kinds the emitters know.
Each pass is a pure `Model -> Model` function (sqlglot's shape); they run in order. A destination
kind that only some stage understands lowers here to kinds every backend knows, plus the objects to
render, so emitters never see it:

- `workload_forks`: a fork of the baseline workload becomes a copy of that Deployment or StatefulSet
  (images, env and replicas changed) and a Service selecting only the copy's pods, both in
  `Model.generated`; the fork itself becomes a host fork to that Service. Expired sandboxes get no
  objects, so a GitOps prune removes them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Callable

from .model import (
    Fork,
    HostDestination,
    KeyRoutes,
    LocalDestination,
    LocalFork,
    Model,
    Sandbox,
    Service,
    UserObject,
    WorkloadDestination,
    tunnel_node,
)
from .names import derived_name
from .ownership import MANAGED, SANDBOX_LABEL

Pass = Callable[[Model], Model]

CLUSTER_OWNED = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")
CLUSTER_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration")


def fork_name(base: str, sandbox: str) -> str:
    """A workload fork's object name (`names.derived_name`): stable, at most 63 characters, and never one
    that another sandbox's objects or the baseline's could have."""
    return derived_name(base, sandbox)


def _selector_key(service: dict) -> tuple[str, str] | None:
    selector = (service.get("spec") or {}).get("selector") or {}
    if not isinstance(selector, dict) or not selector:
        return None
    key = sorted(selector)[0]
    return key, str(selector[key])


def _apply(containers: list, dest: WorkloadDestination) -> None:
    def pick(name: str | None) -> dict:
        return containers[0] if name is None else next(c for c in containers if c.get("name") == name)

    for change in dest.images:
        pick(change.container)["image"] = change.image
    for change in dest.env:
        env = pick(change.container).setdefault("env", [])
        var = {"name": change.name, "value": change.value}
        at = next((i for i, e in enumerate(env) if isinstance(e, dict) and e.get("name") == change.name), None)
        if at is None:
            env.append(var)
        else:
            env[at] = var  # in place: a later variable may refer to it as $(NAME)


# labels that say which version a pod runs: telemetry and Kiali credit the pod to the value, so the fork's
# pods carry the sandbox's name there instead of the baseline's version
VERSION_LABELS = ("version", "app.kubernetes.io/version", "service.istio.io/canonical-revision")
# what Istio reads a port's protocol from (appProtocol): set on every Service meshforge renders, so the
# cluster sees the protocol the model routes by, whatever the port's name says
APP_PROTOCOL = {"HTTP": "http", "HTTP2": "http2", "GRPC": "grpc", "GRPC-WEB": "grpc-web", "TCP": "tcp", "TLS": "tls",
                "HTTPS": "https", "MONGO": "mongo", "MYSQL": "mysql", "REDIS": "redis"}


def _as_deployment(rollout: dict) -> dict:
    """An Argo Rollout as the Deployment its fork is: the pod template, selector and replicas; the rollout
    strategy (canary, blue-green, analysis) stays with the baseline."""
    spec = rollout.get("spec") or {}
    out = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": rollout.get("metadata") or {},
           "spec": {k: spec[k] for k in ("replicas", "selector", "template", "minReadySeconds",
                                         "revisionHistoryLimit", "progressDeadlineSeconds") if k in spec}}
    return out


def _objects(fork: Fork, dest: WorkloadDestination, svc: Service) -> tuple[list[UserObject], str]:
    """The fork's workload and Service, and the host that reaches the Service."""
    base, service = dest.workload, dest.service
    svc_body = service.body
    ns = service.namespace
    labels = {**MANAGED, SANDBOX_LABEL: fork.sandbox}
    key, value = _selector_key(svc_body) or ("app", base.name)
    pod_label = {key: fork_name(value, fork.sandbox), SANDBOX_LABEL: fork.sandbox}
    svc_name = fork_name(service.name, fork.sandbox)

    w = copy.deepcopy(base.body if base.kind != "Rollout" else _as_deployment(base.body))
    kind = "Deployment" if base.kind == "Rollout" else base.kind
    w.pop("status", None)
    meta = w.setdefault("metadata", {})
    for f in CLUSTER_OWNED:
        meta.pop(f, None)
    meta.pop("ownerReferences", None)
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in CLUSTER_ANNOTATIONS}
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    meta["name"] = fork_name(base.name, fork.sandbox)
    meta["namespace"] = ns
    meta["labels"] = {**_versioned(meta.get("labels"), fork.sandbox), **labels}
    spec = w.setdefault("spec", {})
    spec["replicas"] = dest.replicas
    spec["selector"] = {"matchLabels": dict(pod_label)}
    if kind == "StatefulSet":
        spec["serviceName"] = svc_name
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**_versioned(tmeta.get("labels"), fork.sandbox), **pod_label}
    _apply(template.setdefault("spec", {}).setdefault("containers", []), dest)

    protocol = {p.number: p.protocol for p in svc.ports}
    ports = []
    for p in (svc_body.get("spec") or {}).get("ports") or []:
        number = p.get("port") if isinstance(p, dict) else None
        # the ports Kubernetes takes (the import warned about the rest and left them out: so does the fork's Service)
        if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 65535:
            port = {k: p[k] for k in ("name", "port", "targetPort", "protocol", "appProtocol") if k in p}
            if protocol.get(p.get("port")) in APP_PROTOCOL:  # the protocol meshforge routes by, declared
                port["appProtocol"] = APP_PROTOCOL[protocol[p["port"]]]
            ports.append(port)
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": svc_name, "namespace": ns, "labels": dict(labels)},
         "spec": {"selector": dict(pod_label), "ports": ports}}
    objects = [UserObject(w.get("apiVersion", "apps/v1"), kind, meta["name"], ns, json.dumps(w), fork.origin),
               UserObject("v1", "Service", svc_name, ns, json.dumps(s), fork.origin)]
    return objects, f"{svc_name}.{ns}.svc.{svc.cluster_domain}"


def _versioned(labels: dict | None, sandbox: str) -> dict:
    """Labels with every version label that is there set to the sandbox's name."""
    out = dict(labels or {})
    for k in VERSION_LABELS:
        if k in out:
            out[k] = sandbox
    return out


def workload_forks(model: Model) -> Model:
    rev = model.change  # when resolution says which sandboxes have workload forks, look at those only
    candidates = model.sandboxes if rev is None else [model.sandbox(n) for n in sorted(rev.workload_sandboxes)]
    hosts: dict[tuple[str, str], HostDestination] = {}
    generated: list[UserObject] = []
    for sb in candidates:
        for f in sb.forks:
            if isinstance(f.destination, WorkloadDestination) and f.destination.workload is not None:
                objects, host = _objects(f, f.destination, model.service_by_id[f.service])
                hosts[(sb.name, f.service)] = HostDestination(host)
                if not sb.expired:
                    generated.extend(objects)
    if not hosts:
        return model

    def lowered(f: Fork) -> Fork:
        h = hosts.get((f.sandbox, f.service))
        return replace(f, destination=h) if h is not None and isinstance(f.destination, WorkloadDestination) else f

    def lower_key(k: KeyRoutes) -> KeyRoutes:
        return replace(k, forks=tuple(map(lowered, k.forks)))

    def lower_sandbox(sb: Sandbox) -> Sandbox:
        return replace(sb, forks=tuple(map(lowered, sb.forks)))

    if rev is None:
        keys = tuple(map(lower_key, model.keys))
        sandboxes = tuple(map(lower_sandbox, model.sandboxes))
    else:  # only the keys and sandboxes that can hold a workload fork are rebuilt; the rest are kept as they are
        keys_list, sandbox_list = list(model.keys), list(model.sandboxes)
        for name in sorted({sb.key for sb in candidates} | rev.group_keys):
            i = model.key_index(name)
            if i is not None:
                keys_list[i] = lower_key(keys_list[i])
        for sb in candidates:
            sandbox_list[model.sandbox_index(sb.name)] = lower_sandbox(sb)
        keys, sandboxes = tuple(keys_list), tuple(sandbox_list)
    generated.sort(key=lambda o: (o.namespace, o.kind, o.name))
    return replace(model, keys=keys, sandboxes=sandboxes, generated=model.generated + tuple(generated))


def local_forks(model: Model) -> Model:
    """Forks to laptops become host forks to the tunnel node (every backend routes them as it routes a fork to
    a Service), and `model.local_forks` lists them for the tunnel node's own configuration. Looks at the
    sandboxes with such a fork (and the route groups' keys, which may hold them) only."""
    rev = model.change
    if model.tunnel is None:
        return model  # resolution refused every fork to a laptop (MF230)
    candidates = [sb for sb in (model.sandboxes if rev is None else
                                [model.sandbox(n) for n in sorted(rev.local_sandboxes)])
                  if sb is not None and any(isinstance(f.destination, LocalDestination) for f in sb.forks)]
    group_keys = frozenset(k.key for k in model.keys if k.owner_kind == "RouteGroup") if rev is None \
        else rev.group_keys
    if not candidates:
        return model
    tunnel = HostDestination(model.tunnel.host, model.tunnel.port)
    found: list[LocalFork] = []

    def lowered(f: Fork) -> Fork:
        return replace(f, destination=tunnel) if isinstance(f.destination, LocalDestination) else f

    keys_list, sandbox_list = list(model.keys), list(model.sandboxes)
    for name in sorted({sb.key for sb in candidates} | group_keys):
        i = model.key_index(name)
        if i is None:
            continue
        k = keys_list[i]
        local = [f for f in k.forks if isinstance(f.destination, LocalDestination)]
        if local:
            found.extend(LocalFork(k.key, f.service, f.destination.owner, tunnel_node(k.key, f.service),
                                   f.destination.otherwise) for f in local)
            keys_list[i] = replace(k, forks=tuple(map(lowered, k.forks)))
    for sb in candidates:
        sandbox_list[model.sandbox_index(sb.name)] = replace(sb, forks=tuple(map(lowered, sb.forks)))
    found.sort(key=lambda f: (f.key, f.service))
    return replace(model, keys=tuple(keys_list), sandboxes=tuple(sandbox_list), local_forks=tuple(found))


PASSES: tuple[Pass, ...] = (workload_forks, local_forks)


def lower(model: Model, passes: tuple[Pass, ...] = PASSES) -> Model:
    for p in passes:
        model = p(model)
    return model
