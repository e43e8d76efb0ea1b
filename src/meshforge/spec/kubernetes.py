"""Kubernetes import: `v1 Service` (+ the workloads it selects) → baseline service declarations.

Input: Kubernetes documents as written (not schema-checked, so every field is read defensively).
Output: `ServiceDecl`s. Pod labels come from the workload a Service selects; dependencies from the
`meshforge.dev/depends-on` annotation and, inferred, from container env values naming a service.
"""

from __future__ import annotations

import re

from ..diagnostics import Diagnostics
from ..model import DEFAULT_NAMESPACE, Port, UserObject, Workload
from ..names import DNS1123_LABEL_HINT, dns1123_label, label_key, label_value
from ..source import Document, escape
from .decls import DepRef, ServiceDecl
from .ports import port_protocol

# Workloads: whatever has a pod template at spec.template, under the API groups manifests still use.
WORKLOAD_KINDS = {
    ("apps/v1", "Deployment"), ("apps/v1beta1", "Deployment"), ("apps/v1beta2", "Deployment"),
    ("extensions/v1beta1", "Deployment"),
    ("apps/v1", "StatefulSet"), ("apps/v1beta1", "StatefulSet"), ("apps/v1beta2", "StatefulSet"),
    ("apps/v1", "DaemonSet"), ("apps/v1beta2", "DaemonSet"), ("extensions/v1beta1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("argoproj.io/v1alpha1", "Rollout"),
}
KINDS = {("v1", "Service")} | WORKLOAD_KINDS
DEPENDS_ON_ANNOTATION = "meshforge.dev/depends-on"

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
# host[:port], optionally behind a scheme: cartservice:7070, http://checkout.payments:8080/x, x.ns.svc.cluster.local
_ADDRESS = re.compile(rf"^(?:[a-z][a-z0-9+.-]*://)?(?P<host>{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>[0-9]{{1,5}}))?(?:/\S*)?$")


def _get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict):
            return default
        d = d.get(p)
    return default if d is None else d


def _str_dict(d) -> dict[str, str]:
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def _namespace(doc: Document, diags: Diagnostics, what: str) -> str | None:
    """metadata.namespace as Kubernetes validates it; None (with a warning) when Kubernetes would refuse it."""
    ns = _get(doc.data, "metadata", "namespace", default=DEFAULT_NAMESPACE)
    if dns1123_label(ns):
        return ns
    diags.warning("MF104", f"{what} with an invalid metadata.namespace ({ns!r}) is skipped",
                  doc.span("/metadata/namespace"), DNS1123_LABEL_HINT)
    return None


def _pod_labels(doc: Document, diags: Diagnostics) -> dict[str, str]:
    labels = _str_dict(_get(doc.data, "spec", "template", "metadata", "labels"))
    bad = sorted(k for k, v in labels.items() if not (label_key(k) and label_value(v)))
    for k in bad:
        diags.warning("MF104", f"pod label {k!r}: {labels.pop(k)!r} is not a valid Kubernetes label; ignored",
                      doc.span(f"/spec/template/metadata/labels/{escape(k)}"),
                      "label keys and values: at most 63 letters, digits, '-', '_' or '.'")
    return labels


def _workloads(docs: list[Document], diags: Diagnostics):
    for doc in docs:
        if (doc.api_version, doc.kind) in WORKLOAD_KINDS:
            ns = _namespace(doc, diags, doc.kind)
            name = _get(doc.data, "metadata", "name")
            if ns is not None:
                yield doc, ns, Workload(doc.kind, name if isinstance(name, str) else "",
                                        tuple(sorted(_pod_labels(doc, diags).items())), doc.span("/metadata/name"))


def import_services(docs: list[Document], diags: Diagnostics) -> list[ServiceDecl]:
    workloads = list(_workloads(docs, diags))
    out: list[ServiceDecl] = []
    for doc in docs:
        if doc.kind != "Service":
            continue
        meta = _get(doc.data, "metadata", default={})
        name = _get(meta, "name")
        if not dns1123_label(name):
            diags.warning("MF104", f"Service without a valid metadata.name ({name!r}) is skipped",
                          doc.span("/metadata/name"), DNS1123_LABEL_HINT)
            continue
        ns = _namespace(doc, diags, f"Service {name}")
        if ns is None:
            continue
        if _get(doc.data, "spec", "type") == "ExternalName":
            continue
        ports = []
        for i, p in enumerate(_get(doc.data, "spec", "ports", default=[]) or []):
            if not isinstance(p, dict) or not isinstance(p.get("port"), int) or str(p.get("protocol", "TCP")).upper() != "TCP":
                continue
            if not 1 <= p["port"] <= 65535:
                diags.warning("MF104", f"Service {name}.{ns}: port {p['port']} is not a port number; ignored",
                              doc.span(f"/spec/ports/{i}/port"))
                continue
            pname = p.get("name") if isinstance(p.get("name"), str) else ""
            ap = p.get("appProtocol") if isinstance(p.get("appProtocol"), str) else None
            ports.append(Port(pname, p["port"], port_protocol(pname, ap), doc.span(f"/spec/ports/{i}")))
        if not ports:
            diags.warning("MF104", f"Service {name}.{ns} has no TCP ports and is skipped", doc.span("/spec/ports"))
            continue
        selector = _str_dict(_get(doc.data, "spec", "selector"))
        selected = sorted(((w, wl) for w, wns, wl in workloads
                           if wns == ns and selector and all(dict(wl.labels).get(k) == v for k, v in selector.items())),
                          key=lambda x: (x[1].kind, x[1].name, x[1].origin))
        if len(selected) > 1:
            diags.note("MF218", f"Service {name}.{ns} selects {len(selected)} workloads "
                       f"({', '.join(f'{wl.kind} {wl.name}' for _, wl in selected)}); its baseline is all their pods",
                       doc.span("/spec/selector"))
        deps: list[DepRef] = []
        declares = False
        for src, ptr_base in [(doc, "/metadata")] + [(w, "/metadata") for w, _ in selected] + \
                [(w, "/spec/template/metadata") for w, _ in selected]:
            ann = _get(src.data, *ptr_base.strip("/").split("/"), "annotations")
            value = ann.get(DEPENDS_ON_ANNOTATION) if isinstance(ann, dict) else None
            if isinstance(value, str):
                declares = True
                ptr = f"{ptr_base}/annotations/meshforge.dev~1depends-on"
                for ref in (r.strip() for r in value.split(",")):
                    if ref:
                        deps.append(DepRef(ref, ns, False, src.span(ptr)))
        if not declares:  # declared dependencies replace inference: nothing to infer, nothing to warn about
            for w, _ in selected:
                deps.extend(_env_refs(w, ns, name))
        out.append(ServiceDecl(name=name, namespace=ns, ports=tuple(ports), endpoints=(),
                               workloads=tuple(wl for _, wl in selected), deps=deps, declares_deps=declares,
                               span=doc.span("/metadata/name"), source="Kubernetes",
                               manifest=UserObject.of(doc.data, name, ns, doc.span("")),
                               workload_manifests=tuple(UserObject.of(w.data, wl.name, ns, w.span(""))
                                                        for w, wl in selected)))
    return out


def _env_refs(workload: Document, ns: str, self_name: str) -> list[DepRef]:
    """Env values that look like a service address; `resolve` keeps those that name a known service."""
    refs = []
    spec = _get(workload.data, "spec", "template", "spec", default={})
    for group in ("initContainers", "containers"):
        containers = _get(spec, group, default=[])
        if not isinstance(containers, list):
            continue
        for ci, c in enumerate(containers):
            env = _get(c, "env", default=[])
            if not isinstance(env, list):
                continue
            for ei, e in enumerate(env):
                value = _get(e, "value")
                if not isinstance(value, str):
                    continue
                m = _ADDRESS.match(value.strip())
                if not m or (m.group("port") is None and "://" not in value and "." not in value):
                    continue  # a bare word ("1", "info") is not an address
                host = m.group("host")
                if host.split(".")[0] == self_name:
                    continue
                ptr = f"/spec/template/spec/{group}/{ci}/env/{ei}/value"
                refs.append(DepRef(host, ns, True, workload.span(ptr), f"env {_get(e, 'name')}={value}"))
    return refs
