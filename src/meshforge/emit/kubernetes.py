"""Kubernetes backend: the workload forks' manifests → YAML files.

Two halves. `fork_objects` builds a workload fork's objects (a copy of the baseline Deployment or StatefulSet
with its images, env and replicas changed, and a Service selecting only the copy's pods) from what lowering
bound for it (`model.WorkloadForkBinding`: names, pod label, host); the pipeline hands it to the lowering pass,
so the objects are in `Model.generated` for every backend's checks. `render_files` writes them:
{"<namespace>/<kind>-<name>.yaml": text}, one object per file, sorted. An expired sandbox generates nothing,
so `kubectl apply --prune` (or Argo CD / Flux pruning) removes its workload.
"""

from __future__ import annotations

import copy
import json

from ..diagnostics import Diagnostics
from ..model import Model, UserObject, WorkloadDestination, WorkloadForkBinding
from ..ownership import MANAGED, SANDBOX_LABEL
from .objects import Rendered

CLUSTER_OWNED = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")
CLUSTER_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration")
# labels that say which version a pod runs: telemetry and Kiali credit the pod to the value, so the fork's
# pods carry the sandbox's name there instead of the baseline's version
VERSION_LABELS = ("version", "app.kubernetes.io/version", "service.istio.io/canonical-revision")
# what Istio reads a port's protocol from (appProtocol): set on every Service meshforge renders, so the
# cluster sees the protocol the model routes by, whatever the port's name says
APP_PROTOCOL = {"HTTP": "http", "HTTP2": "http2", "GRPC": "grpc", "GRPC-WEB": "grpc-web", "TCP": "tcp", "TLS": "tls",
                "HTTPS": "https", "MONGO": "mongo", "MYSQL": "mysql", "REDIS": "redis"}


def render_files(model: Model, diags: Diagnostics) -> list[Rendered]:
    return [Rendered(f"{o.namespace}/{o.kind.lower()}-{o.name}.yaml", None,
                     (o.group, o.kind, o.namespace, o.name), o.origin, body=o.body) for o in model.generated]


def fork_objects(binding: WorkloadForkBinding) -> tuple[UserObject, ...]:
    """A workload fork's workload and Service."""
    dest, sandbox, ns = binding.destination, binding.sandbox, binding.namespace
    base = dest.workload
    labels = {**MANAGED, SANDBOX_LABEL: sandbox}
    key, value = binding.pod_label
    pod_label = {key: value, SANDBOX_LABEL: sandbox}

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
    meta["name"] = binding.workload_name
    meta["namespace"] = ns
    meta["labels"] = {**_versioned(meta.get("labels"), sandbox), **labels}
    spec = w.setdefault("spec", {})
    spec["replicas"] = dest.replicas
    spec["selector"] = {"matchLabels": dict(pod_label)}
    if kind == "StatefulSet":
        spec["serviceName"] = binding.service_name
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**_versioned(tmeta.get("labels"), sandbox), **pod_label}
    _apply(template.setdefault("spec", {}).setdefault("containers", []), dest)

    protocol = {p.number: p.protocol for p in binding.service.ports}
    ports = []
    for p in (dest.service.body.get("spec") or {}).get("ports") or []:
        number = p.get("port") if isinstance(p, dict) else None
        # the ports Kubernetes takes (the import warned about the rest and left them out: so does the fork's Service)
        if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 65535:
            port = {k: p[k] for k in ("name", "port", "targetPort", "protocol", "appProtocol") if k in p}
            if protocol.get(p.get("port")) in APP_PROTOCOL:  # the protocol meshforge routes by, declared
                port["appProtocol"] = APP_PROTOCOL[protocol[p["port"]]]
            ports.append(port)
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": binding.service_name, "namespace": ns, "labels": dict(labels)},
         "spec": {"selector": dict(pod_label), "ports": ports}}
    return (UserObject(w.get("apiVersion", "apps/v1"), kind, meta["name"], ns, json.dumps(w), binding.origin),
            UserObject("v1", "Service", binding.service_name, ns, json.dumps(s), binding.origin))


def _as_deployment(rollout: dict) -> dict:
    """An Argo Rollout as the Deployment its fork is: the pod template, selector and replicas; the rollout
    strategy (canary, blue-green, analysis) stays with the baseline."""
    spec = rollout.get("spec") or {}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": rollout.get("metadata") or {},
            "spec": {k: spec[k] for k in ("replicas", "selector", "template", "minReadySeconds",
                                          "revisionHistoryLimit", "progressDeadlineSeconds") if k in spec}}


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


def _versioned(labels: dict | None, sandbox: str) -> dict:
    """Labels with every version label that is there set to the sandbox's name."""
    out = dict(labels or {})
    for k in VERSION_LABELS:
        if k in out:
            out[k] = sandbox
    return out
