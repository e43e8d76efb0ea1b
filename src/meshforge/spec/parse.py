"""Documents → declarations: dispatch by kind, schema-check meshforge kinds, read their fields.

Input: `Document`s from `source.py`. Output: `Decls` and diagnostics. Documents of kinds meshforge
does not know (ConfigMap, ServiceAccount, ...) are ignored, as the contract says.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, did_you_mean
from ..model import (
    DEFAULT_NAMESPACE,
    Destination,
    Endpoint,
    EndpointsDestination,
    EnvChange,
    HostDestination,
    ImageChange,
    LocalDestination,
    Port,
    SubsetDestination,
    UserObject,
    Workload,
    WorkloadDestination,
)
from ..names import dns1123_label, dns1123_subdomain, is_address
from ..source import Document
from . import manifests
from .decls import (
    Decls,
    DepRef,
    EdgeDecl,
    ForkDecl,
    RouteGroupDecl,
    SandboxDecl,
    ServiceDecl,
    Settings,
    TunnelDecl,
)
from .ports import port_protocol
from .schema import KINDS, validate_document

API_GROUP = "meshforge.dev"
API_VERSION = "meshforge.dev/v1alpha1"
# Objects of other systems kept as written: backends merge into them (Istio) or check them (Gateway API).
USER_KINDS = frozenset({("networking.istio.io", "VirtualService"), ("gateway.networking.k8s.io", "HTTPRoute"),
                        ("gateway.networking.k8s.io", "GRPCRoute")})


def finish(parts: list[Decls], k8s: list[Document], diags: Diagnostics) -> Decls:
    """Every file's declarations together, plus the Kubernetes import, which needs every Service and
    workload at once (selectors cross files)."""
    out = Decls()
    for p in parts:
        out.services.extend(p.services)
        out.sandboxes.extend(p.sandboxes)
        out.route_groups.extend(p.route_groups)
        out.settings.extend(p.settings)
        out.user_objects.extend(p.user_objects)
        out.edges.extend(p.edges)
        out.tunnels.extend(p.tunnels)
        out.objects.extend(p.objects)
    out.services.extend(manifests.import_services(k8s, diags))
    return out


def parse_file(docs: list[Document], diags: Diagnostics,
               namespace: str = DEFAULT_NAMESPACE) -> tuple[Decls, list[Document]]:
    """Documents → meshforge declarations (independent per file), plus the Kubernetes documents set aside.
    `namespace`: the namespace of every object that names none (`--namespace`, as `kubectl -n` and
    `helm --namespace` give it to namespace-less manifests)."""
    decls = Decls()
    k8s: list[Document] = []
    objects = [d for d in docs if isinstance(d.data, dict) and isinstance(d.data.get("apiVersion"), str)
               and isinstance(d.data.get("kind"), str)]
    if docs and not objects and any(isinstance(d.data, dict) for d in docs):
        diags.warning("MF008", "nothing here is an object meshforge reads: no document has apiVersion and kind, so "
                      "the file is ignored", docs[0].span(""),
                      "meshforge reads Baseline, Sandbox and RouteGroup (meshforge.dev/v1alpha1), Kubernetes "
                      "Services and workloads, VirtualServices and HTTPRoutes; is this the right file (a CI "
                      "workflow or a values file)?")
    for doc in _expand_lists(docs, diags):
        if namespace != DEFAULT_NAMESPACE and isinstance(doc.data, dict) and isinstance(doc.data.get("metadata"), dict) \
                and "namespace" not in doc.data["metadata"]:
            doc.data["metadata"]["namespace"] = namespace
        if not isinstance(doc.data, dict):
            diags.error("MF005", f"document is {type(doc.data).__name__}, not an object", doc.span(""),
                        "each YAML document must be a mapping with apiVersion and kind")
            continue
        api, kind = doc.api_version, doc.kind
        api = api if isinstance(api, str) else None
        kind = kind if isinstance(kind, str) else None
        if api is not None and kind is not None and api.split("/")[0] != API_GROUP:
            meta = doc.data.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if isinstance(name, str):
                ns = meta.get("namespace") or DEFAULT_NAMESPACE
                decls.objects.append((api.rsplit("/", 1)[0] if "/" in api else "", kind, str(ns), name))
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
        elif isinstance(api, str) and (api.split("/")[0], kind) in USER_KINDS:
            meta = doc.data.get("metadata") or {}
            name = meta.get("name") if isinstance(meta, dict) else None
            ns = (meta.get("namespace") or DEFAULT_NAMESPACE) if isinstance(meta, dict) else None
            if dns1123_subdomain(name) and dns1123_label(ns):
                spec = doc.data.get("spec") if isinstance(doc.data.get("spec"), dict) else {}
                spans = tuple((f"/spec/{part}/{i}", doc.span(f"/spec/{part}/{i}")) for part in ("rules", "http")
                              if isinstance(spec.get(part), list) for i in range(min(len(spec[part]), 64)))
                decls.user_objects.append(UserObject.of(doc.data, name, ns, doc.span(""), spans))
            else:
                diags.warning("MF104", f"{kind} with an invalid name or namespace ({name!r}, {ns!r}) is "
                              "ignored", doc.span("/metadata"), "Kubernetes names are lower-case DNS names")
        elif (api, kind) in manifests.KINDS:
            k8s.append(doc)
            if kind == "Rollout":  # also kept as written: the Istio backend leaves alone what it routes
                meta = doc.data.get("metadata") or {}
                name, ns = (meta.get("name"), meta.get("namespace") or DEFAULT_NAMESPACE) if isinstance(meta, dict) \
                    else (None, None)
                if dns1123_subdomain(name) and dns1123_label(ns):
                    decls.user_objects.append(UserObject.of(doc.data, name, ns, doc.span("")))
    return decls, k8s


def _expand_lists(docs: list[Document], diags: Diagnostics):
    """`kind: List` (what `kubectl get -o yaml` prints) stands for its items."""
    for doc in docs:
        data = doc.data
        if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1":
            items = data.get("items")
            if not isinstance(items, list):
                diags.warning("MF104", "a List without a list of items is ignored", doc.span("/items"))
                continue
            for i, item in enumerate(items):
                if isinstance(item, dict):  # nested Lists do not occur in kubectl output; not expanded
                    yield doc.child(f"/items/{i}")
        else:
            yield doc


def _check_addresses(doc: Document, base: str, endpoints: list, diags: Diagnostics) -> None:
    for j, e in enumerate(endpoints):
        if not is_address(e["address"]):
            diags.error("MF104", f"{e['address']!r} is neither an IP address nor a DNS name",
                        doc.span(f"{base}/{j}/address"), "write an IPv4/IPv6 address or a host name like db.example.com")


def _labels(d) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((d or {}).items()))


def _baseline(doc: Document, decls: Decls, diags: Diagnostics) -> None:
    data = doc.data
    meta, spec = data["metadata"], data.get("spec") or {}
    default_ns = meta.get("namespace", DEFAULT_NAMESPACE)
    routing = spec.get("routing") or {}
    decls.settings.append(Settings(routing.get("baggageKey"), routing.get("header"), spec.get("clusterDomain"),
                                   doc.span("/spec")))
    if "edge" in spec:
        e = spec["edge"]
        decls.edges.append(EdgeDecl(
            e["service"], default_ns, e.get("port"),
            tuple((h, doc.span(f"/spec/edge/hosts/{j}")) for j, h in enumerate(e.get("hosts") or ())),
            e.get("previewDomain"),
            tuple((src, doc.span(f"/spec/edge/trustedSources/{j}")) for j, src in enumerate(e.get("trustedSources") or ())),
            e.get("istioGateway"), e.get("gateway"), doc.span("/spec/edge", key=True), doc.span("/spec/edge/service"),
            doc.span("/spec/edge/port"), e.get("previewAuth"), doc.span("/spec/edge/previewAuth", key=True)))
    if "tunnel" in spec:
        t = spec["tunnel"]
        decls.tunnels.append(TunnelDecl(t["host"], t["port"], doc.span("/spec/tunnel", key=True)))
    for i, svc in enumerate(spec.get("services") or []):
        base = f"/spec/services/{i}"
        ns = svc.get("namespace", default_ns)
        ports = tuple(Port(p.get("name", ""), p["port"], port_protocol(p.get("name"), p.get("appProtocol")),
                           doc.span(f"{base}/ports/{j}"))
                      for j, p in enumerate(svc["ports"])) if "ports" in svc else None
        _check_addresses(doc, f"{base}/endpoints", svc.get("endpoints") or [], diags)
        deps = [DepRef(ref, ns, False, doc.span(f"{base}/dependsOn/{j}"))
                for j, ref in enumerate(svc.get("dependsOn") or [])]
        workloads = (Workload("Baseline", svc["name"], _labels(svc["labels"]), doc.span(f"{base}/labels")),) \
            if "labels" in svc else None
        decls.services.append(ServiceDecl(
            name=svc["name"], namespace=ns, ports=ports,
            endpoints=tuple(Endpoint(e["address"], e["port"]) for e in svc["endpoints"]) if "endpoints" in svc
            else None,
            workloads=workloads, deps=deps, declares_deps="dependsOn" in svc,
            span=doc.span(f"{base}/name"), cluster_domain=spec.get("clusterDomain")))


def _destination(to: dict) -> Destination:
    """The schema guarantees exactly one of the destination fields."""
    if "host" in to:
        return HostDestination(to["host"], to.get("port"))
    if "endpoints" in to:
        return EndpointsDestination(tuple(Endpoint(e["address"], e["port"]) for e in to["endpoints"]))
    if "subset" in to:
        return SubsetDestination(_labels(to["subset"]["labels"]))
    if "local" in to:
        other = to["local"].get("otherwise")
        return LocalDestination(to["local"].get("owner"), _destination(other) if other is not None else None)
    w = to["workload"]
    source = w.get("from") or {}
    return WorkloadDestination(
        images=tuple(ImageChange(i.get("container"), i["image"]) for i in w.get("images") or []),
        env=tuple(EnvChange(e.get("container"), e["name"], e["value"]) for e in w.get("env") or []),
        replicas=w.get("replicas", 1), from_kind=source.get("kind"), from_name=source.get("name"))


def _sandbox(doc: Document, decls: Decls, diags: Diagnostics) -> None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    key_ptr = "/spec/routingKey" if "routingKey" in spec else "/metadata/name"
    for i, f in enumerate(spec["forks"]):
        _check_addresses(doc, f"/spec/forks/{i}/to/endpoints", f["to"].get("endpoints") or [], diags)
        other = (f["to"].get("local") or {}).get("otherwise") or {}
        _check_addresses(doc, f"/spec/forks/{i}/to/local/otherwise/endpoints", other.get("endpoints") or [], diags)
    forks = [ForkDecl(f["service"], doc.span(f"/spec/forks/{i}/service"), _destination(f["to"]),
                      doc.span(f"/spec/forks/{i}"))
             for i, f in enumerate(spec["forks"])]
    decls.sandboxes.append(SandboxDecl(
        name=meta["name"], namespace=meta.get("namespace", DEFAULT_NAMESPACE),
        key=spec.get("routingKey", meta["name"]), key_span=doc.span(key_ptr),
        labels=_labels(meta.get("labels")), expires_at=spec.get("expiresAt"),
        expires_span=doc.span("/spec/expiresAt"), forks=forks, span=doc.span("/metadata/name"),
        not_before=spec.get("notBefore"), not_before_span=doc.span("/spec/notBefore")))


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
        span=doc.span("/metadata/name"), not_before=spec.get("notBefore"), not_before_span=doc.span("/spec/notBefore")))

