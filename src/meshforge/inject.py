"""Sidecar injection for manifests (`meshforge inject`, as `istioctl kube-inject`): workloads come out with
meshforge's transparent sidecar, ready for `kubectl apply`.

Input: the documents of the given files (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, Argo
Rollouts, Pods; anything else passes as it is) and where `serve` listens. Output: the same documents in the
same order, each workload's pod template with
- an init container `meshforge-capture` (after the workload's own) that installs the capture rules (`meshforge capture-rules`, as root
  with NET_ADMIN and NET_RAW only; it exits before the application starts), and
- a container `meshforge-proxy` that writes its bootstrap (`meshforge bootstrap --transparent`) and runs Envoy
  as the proxy user (`--proxy-uid`, 1337), whose connections the rules leave alone.
Probes and resources of the application's containers are not touched: only outbound traffic is captured, so
the kubelet's probes (inbound, to the pod's address) reach the application as before. The sidecar names the
service whose selector takes the workload's pods (among several, the one named after the workload or its app
label; annotation `meshforge.dev/service` overrides). A workload
already injected, or annotated `meshforge.dev/inject: "false"`, is left as it is.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass

from .capture import Capture
from .diagnostics import Diagnostics
from .source import Document
from .spec.manifests import selects

INJECT_ANNOTATION = "meshforge.dev/inject"
SERVICE_ANNOTATION = "meshforge.dev/service"
PROXY = "meshforge-proxy"
CAPTURE = "meshforge-capture"
DEFAULT_IMAGE = "meshforge-sidecar:0.1.0"  # built with deploy/Dockerfile.sidecar (not published)
TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Rollout"}


@dataclass(frozen=True)
class Sidecar:
    xds_address: str
    capture: Capture
    image: str = DEFAULT_IMAGE
    admin_port: int = 15000


def _pod(doc: Document) -> tuple[dict, str] | None:
    """The pod spec's parent (a Pod or a template) and its JSON pointer, for the kinds that have one."""
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        return None
    if data.get("kind") == "Pod" and data.get("apiVersion") == "v1":
        return data, ""
    if data.get("kind") == "CronJob" and isinstance(data["spec"].get("jobTemplate"), dict):
        job = data["spec"]["jobTemplate"].get("spec")
        if isinstance(job, dict) and isinstance(job.get("template"), dict):
            return job["template"], "/spec/jobTemplate/spec/template"
    if data.get("kind") in TEMPLATE_KINDS and isinstance(data["spec"].get("template"), dict):
        return data["spec"]["template"], "/spec/template"
    return None


def _service_of(doc: Document, pod: dict, services: list[Document], diags: Diagnostics, at: str) -> str | None:
    meta = doc.data.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    annotations = {**(meta.get("annotations") or {}), **((pod.get("metadata") or {}).get("annotations") or {})}
    if annotations.get(SERVICE_ANNOTATION):
        name = str(annotations[SERVICE_ANNOTATION])
        return name if "." in name else f"{name}.{ns}"
    labels = (pod.get("metadata") or {}).get("labels") or {}  # a mapping (_unreadable)
    chosen = sorted(
        str(s.data["metadata"]["name"]) for s in services
        if (s.data["metadata"].get("namespace") or "default") == ns and isinstance(s.data.get("spec"), dict)
        and selects(s.data["spec"].get("selector"), labels))
    if len(chosen) > 1:
        # an internal and an external Service over one workload (frontend, frontend-external) is common: both
        # reach the same pods and the same dependencies, so the one named after the workload (or its app
        # label) names the sidecar; only a choice with no such name is left to the user
        named = [n for n in (meta.get("name"), labels.get("app"), labels.get("app.kubernetes.io/name")) if n in chosen]
        if named:
            return f"{named[0]}.{ns}"
        diags.error("MF401", f"{doc.kind} {meta.get('name')!r}: its pods are selected by several Services "
                    f"({', '.join(chosen)}): the sidecar must name one", doc.span(at + "/metadata"),
                    hint=f"annotate the pod template with {SERVICE_ANNOTATION}: NAME")
        return None
    if not chosen:
        diags.warning("MF402", f"{doc.kind} {meta.get('name')!r}: no Service among the inputs selects its pods: "
                      f"the sidecar names the service {meta.get('name')}.{ns}", doc.span(at + "/metadata"),
                      hint=f"give the Service's manifest too, or annotate the pod template with {SERVICE_ANNOTATION}")
        return f"{meta.get('name')}.{ns}"
    return f"{chosen[0]}.{ns}"


def _containers(sidecar: Sidecar, service: str) -> tuple[dict, dict]:
    c = sidecar.capture
    rules = ["meshforge", "capture-rules", "--proxy-uid", str(c.proxy_uid), "--outbound-port", str(c.outbound_port)]
    for cidr in c.exclude_cidrs:
        rules += ["--exclude-cidr", cidr]
    for port in c.exclude_ports:
        rules += ["--exclude-port", str(port)]
    boot = ["meshforge", "bootstrap", "--service", service, "--transparent", "--xds-address", sidecar.xds_address,
            "--outbound-port", str(c.outbound_port), "--admin-port", str(sidecar.admin_port)]
    init = {"name": CAPTURE, "image": sidecar.image,
            "command": ["sh", "-c", f"{shlex.join(rules)} | iptables-restore"],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}
    proxy = {"name": PROXY, "image": sidecar.image,
             "command": ["sh", "-c", f"{shlex.join(boot)} > /tmp/envoy.yaml && exec envoy -c /tmp/envoy.yaml "
                         "--log-level warning"],
             "securityContext": {"runAsUser": c.proxy_uid, "runAsGroup": c.proxy_uid, "runAsNonRoot": c.proxy_uid != 0,
                                 "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
             "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}}
    return init, proxy


def _unreadable(doc: Document, pod: dict, at: str) -> tuple[str, str] | None:
    """(pointer, what is wrong) when the workload is not shaped as Kubernetes defines it, else None."""
    def mapping(pointer: str, value) -> tuple[str, str] | None:
        return None if value is None or isinstance(value, dict) else (pointer, "is not a mapping")

    meta, pod_meta = doc.data.get("metadata"), pod.get("metadata")
    wrong = mapping("/metadata", meta) or mapping(f"{at}/metadata", pod_meta) or mapping(f"{at}/spec", pod.get("spec"))
    if wrong:
        return wrong
    for pointer, m in (("/metadata", meta or {}), (f"{at}/metadata", pod_meta or {})):
        wrong = mapping(f"{pointer}/annotations", m.get("annotations")) or mapping(f"{pointer}/labels", m.get("labels"))
        if wrong:
            return wrong
    spec = pod.get("spec") or {}
    for name in ("containers", "initContainers"):
        value = spec.get(name)
        if name == "containers" and not value:
            return f"{at}/spec/containers", "is missing or empty"
        if value is not None and not (isinstance(value, list) and all(isinstance(c, dict) for c in value)):
            return f"{at}/spec/{name}", "is not a list of containers"
    return None


def inject(docs: list[Document], sidecar: Sidecar, diags: Diagnostics) -> list[object]:
    """The documents' data, workloads injected (new objects: the inputs are not changed)."""
    services = [d for d in docs if d.kind == "Service" and d.api_version == "v1" and isinstance(d.data, dict)
                and isinstance(d.data.get("metadata"), dict) and d.data["metadata"].get("name")]
    out: list[object] = []
    for doc in docs:
        if _pod(doc) is None:
            out.append(doc.data)
            continue
        data = copy.deepcopy(doc.data)
        pod, at = _pod(Document(doc.file, doc.index, data))  # for a Pod, the object itself
        wrong = _unreadable(doc, pod, at)
        if wrong is not None:
            diags.error("MF404", f"{doc.kind}: {wrong[0]} {wrong[1]}: inject cannot read this workload",
                        doc.span(wrong[0]), hint="kubectl apply --dry-run=server -f FILE says what Kubernetes expects")
            out.append(doc.data)
            continue
        meta = pod.setdefault("metadata", {})
        annotations = {**((doc.data.get("metadata") or {}).get("annotations") or {}), **(meta.get("annotations") or {})}
        spec = pod["spec"]
        containers = spec["containers"]
        opted_out = str(annotations.get(INJECT_ANNOTATION, "")).lower() in ("false", "disabled")
        if opted_out or any(c.get("name") == PROXY for c in containers):
            why = f"{INJECT_ANNOTATION}: {annotations[INJECT_ANNOTATION]}" if opted_out else "already injected"
            diags.note("MF403", f"{doc.kind} {(doc.data.get('metadata') or {}).get('name')!r} left as it is ({why})",
                       doc.span(at))
            out.append(doc.data)
            continue
        service = _service_of(doc, pod, services, diags, at)
        if service is None:
            out.append(doc.data)
            continue
        init, proxy = _containers(sidecar, service)
        # last: the application's own init containers run before the capture (no proxy runs yet to take it)
        spec["initContainers"] = [*(spec.get("initContainers") or []), init]
        spec["containers"] = [*containers, proxy]
        meta.setdefault("annotations", {})[INJECT_ANNOTATION] = "injected"
        out.append(data)
    return out
