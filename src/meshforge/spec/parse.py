"""Documents → declarations: dispatch by kind, schema-check meshforge kinds, read their fields.

Input: `Document`s from `source.py`. Output: `Decls` and diagnostics. Documents of kinds meshforge
does not know (ConfigMap, ServiceAccount, ...) are ignored, as the contract says.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, did_you_mean
from ..model import DEFAULT_NAMESPACE, Destination, Endpoint, Port, UserVirtualService
from ..source import Document
from . import kubernetes
from .decls import (
    Decls,
    DepRef,
    ForkDecl,
    RouteGroupDecl,
    SandboxDecl,
    ServiceDecl,
    Settings,
)
from .schema import KINDS, validate_document

API_GROUP = "meshforge.dev"
API_VERSION = "meshforge.dev/v1alpha1"


def port_protocol(name: str | None, app_protocol: str | None) -> str:
    """Istio's rule: appProtocol, else the port name's prefix (`grpc`, `grpc-api`, `http2-x`, ...)."""
    known = ("grpc-web", "http2", "https", "http", "grpc", "tcp", "tls", "mongo", "mysql", "redis", "udp")
    if app_protocol:
        ap = app_protocol.lower()
        ap = ap.split("/")[-1]  # kubernetes.io/h2c and friends
        if ap == "h2c":
            return "HTTP2"
        return ap.upper() if ap in known else "UNKNOWN"
    if name:
        n = name.lower()
        for proto in known:
            if n == proto or n.startswith(proto + "-"):
                return proto.upper()
    return "UNKNOWN"


def parse_documents(docs: list[Document], diags: Diagnostics) -> Decls:
    decls, k8s = parse_own_documents(docs, diags)
    return finish(decls, k8s, diags)


def finish(decls: Decls, k8s: list[Document], diags: Diagnostics) -> Decls:
    """Kubernetes import needs every Service and workload at once (selectors cross files)."""
    decls.services.extend(kubernetes.import_services(k8s, diags))
    return decls


def merge(parts: list[Decls]) -> Decls:
    out = Decls()
    for p in parts:
        out.services.extend(p.services)
        out.sandboxes.extend(p.sandboxes)
        out.route_groups.extend(p.route_groups)
        out.settings.extend(p.settings)
        out.virtual_services.extend(p.virtual_services)
    return out


def parse_own_documents(docs: list[Document], diags: Diagnostics) -> tuple[Decls, list[Document]]:
    """Documents → meshforge declarations (independent per file), plus the Kubernetes documents set aside."""
    decls = Decls()
    k8s: list[Document] = []
    for doc in docs:
        if not isinstance(doc.data, dict):
            diags.error("MF005", f"document is {type(doc.data).__name__}, not an object", doc.span(""),
                        "each YAML document must be a mapping with apiVersion and kind")
            continue
        api, kind = doc.api_version, doc.kind
        api = api if isinstance(api, str) else None
        kind = kind if isinstance(kind, str) else None
        if isinstance(api, str) and api.split("/")[0] == API_GROUP:
            if kind not in KINDS or api != API_VERSION:
                if kind not in KINDS:
                    diags.error("MF007", f"unknown meshforge kind {kind!r}", doc.span("/kind"),
                                did_you_mean(str(kind), KINDS) or "kinds: " + ", ".join(KINDS))
                else:
                    diags.error("MF007", f"unknown apiVersion {api!r} for {kind}", doc.span("/apiVersion"),
                                f"use apiVersion: {API_VERSION}")
                continue
            if not validate_document(doc, diags):
                continue
            {"Baseline": _baseline, "Sandbox": _sandbox, "RouteGroup": _route_group}[kind](doc, decls, diags)
        elif isinstance(api, str) and api.startswith("networking.istio.io/") and kind == "VirtualService":
            meta = doc.data.get("metadata") or {}
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                decls.virtual_services.append(UserVirtualService(
                    meta["name"], str(meta.get("namespace") or DEFAULT_NAMESPACE), doc.data, doc.span("")))
        elif (api, kind) in kubernetes.KINDS:
            k8s.append(doc)
    return decls, k8s


def _labels(d) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((d or {}).items()))


def _baseline(doc: Document, decls: Decls, diags: Diagnostics) -> None:
    data = doc.data
    meta, spec = data["metadata"], data.get("spec") or {}
    default_ns = meta.get("namespace", DEFAULT_NAMESPACE)
    routing = spec.get("routing") or {}
    decls.settings.append(Settings(routing.get("baggageKey"), routing.get("header"), spec.get("clusterDomain"),
                                   doc.span("/spec")))
    for i, svc in enumerate(spec.get("services") or []):
        base = f"/spec/services/{i}"
        ns = svc.get("namespace", default_ns)
        ports = tuple(Port(p.get("name", ""), p["port"], port_protocol(p.get("name"), p.get("appProtocol")))
                      for p in svc["ports"])
        deps = [DepRef(ref, ns, False, doc.span(f"{base}/dependsOn/{j}"))
                for j, ref in enumerate(svc.get("dependsOn") or [])]
        decls.services.append(ServiceDecl(
            name=svc["name"], namespace=ns, ports=ports,
            endpoints=tuple(Endpoint(e["address"], e["port"]) for e in svc.get("endpoints") or []),
            labels=_labels(svc.get("labels")), deps=deps, declares_deps="dependsOn" in svc,
            span=doc.span(f"{base}/name"), cluster_domain=spec.get("clusterDomain")))


def _destination(to: dict) -> Destination:
    if "host" in to:
        return Destination("host", host=to["host"], port=to.get("port"))
    if "endpoints" in to:
        return Destination("endpoints", endpoints=tuple(Endpoint(e["address"], e["port"]) for e in to["endpoints"]))
    return Destination("subset", subset_labels=_labels(to["subset"]["labels"]))


def _sandbox(doc: Document, decls: Decls, diags: Diagnostics) -> None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    key_ptr = "/spec/routingKey" if "routingKey" in spec else "/metadata/name"
    forks = [ForkDecl(f["service"], doc.span(f"/spec/forks/{i}/service"), _destination(f["to"]),
                      doc.span(f"/spec/forks/{i}"))
             for i, f in enumerate(spec["forks"])]
    decls.sandboxes.append(SandboxDecl(
        name=meta["name"], namespace=meta.get("namespace", DEFAULT_NAMESPACE),
        key=spec.get("routingKey", meta["name"]), key_span=doc.span(key_ptr),
        labels=_labels(meta.get("labels")), expires_at=spec.get("expiresAt"),
        expires_span=doc.span("/spec/expiresAt"), forks=forks, span=doc.span("/metadata/name")))


def _route_group(doc: Document, decls: Decls, diags: Diagnostics) -> None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    match = spec["match"]
    key_ptr = "/spec/routingKey" if "routingKey" in spec else "/metadata/name"
    members = None
    if "sandboxes" in match:
        members = [(n, doc.span(f"/spec/match/sandboxes/{i}")) for i, n in enumerate(match["sandboxes"])]
    decls.route_groups.append(RouteGroupDecl(
        name=meta["name"], key=spec.get("routingKey", meta["name"]), key_span=doc.span(key_ptr),
        members=members, labels=_labels(match["labels"]) if "labels" in match else None,
        span=doc.span("/metadata/name")))


__all__ = ["parse_documents", "port_protocol", "DepRef", "ServiceDecl"]
