"""Kubernetes import: `v1 Service` (+ the workloads it selects) → baseline service declarations.

Input: Kubernetes documents as written (not schema-checked, so every field is read defensively).
Output: `ServiceDecl`s. Pod labels come from the workload a Service selects; dependencies from the
`meshforge.dev/depends-on` annotation and, inferred, from container env values naming a service.
"""

from __future__ import annotations

import re

from ..diagnostics import Diagnostics
from ..model import DEFAULT_NAMESPACE, Port, UserObject, Workload
from ..names import DNS1123_LABEL_HINT, dns1123_label, label_key, label_value, printable
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
# read, never output: the values of env vars that `envFrom` and `valueFrom` take from them
CONFIG_KINDS = {("v1", "ConfigMap"), ("v1", "Secret")}
KINDS = {("v1", "Service")} | WORKLOAD_KINDS | CONFIG_KINDS
DEPENDS_ON_ANNOTATION = "meshforge.dev/depends-on"

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
# host[:port], optionally behind a scheme: cartservice:7070, http://checkout.payments:8080/x, x.ns.svc.cluster.local
_ADDRESS = re.compile(rf"^(?:[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?)?(?P<host>{_LABEL}(?:\.{_LABEL})*)"
                      rf"(?::(?P<port>[0-9]{{1,5}}))?(?:[/?]\S*)?$")


def _get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict):
            return default
        d = d.get(p)
    return default if d is None else d


def selects(selector: object, labels) -> bool:
    """A Service's (equality) selector takes pods with `labels` (a mapping or (key, value) pairs): every key
    with its value, compared as strings. An empty or malformed selector takes none (Kubernetes leaves such a
    Service's endpoints to the user)."""
    sel = _str_dict(selector)
    have = _str_dict(dict(labels) if not isinstance(labels, dict) else labels)
    return bool(sel) and all(have.get(k) == v for k, v in sel.items())


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


def pod_labels(doc: Document, diags: Diagnostics) -> dict[str, str]:
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
                                        tuple(sorted(pod_labels(doc, diags).items())), doc.span("/metadata/name"))


def import_services(docs: list[Document], diags: Diagnostics) -> list[ServiceDecl]:
    workloads = list(_workloads(docs, diags))
    found_configs = configs(docs)
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
            if not isinstance(p, dict) or not isinstance(p.get("port"), int) or isinstance(p.get("port"), bool):
                what = "is not a mapping" if not isinstance(p, dict) else "has no port" if "port" not in p else \
                    f"has port {printable(repr(p['port'])[:80])}, which is not a number"
                at = f"/spec/ports/{i}/port" if isinstance(p, dict) and "port" in p else f"/spec/ports/{i}"
                diags.warning("MF104", f"Service {name}.{ns}: ports[{i}] {what} (the Kubernetes API refuses such a "
                              "Service); ignored", doc.span(at),
                              "each port is a mapping with a number, without quotes: {name: http, port: 80}")
                continue
            if str(p.get("protocol", "TCP")).upper() != "TCP":
                continue  # UDP, SCTP: nothing meshforge routes
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
                           if wns == ns and selects(selector, wl.labels)),
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
        partial: list[str] = []
        if not declares:  # declared dependencies replace inference: nothing to infer, nothing to warn about
            for w, _ in selected:
                found, missing = _env_refs(w, ns, name, found_configs)
                deps.extend(found)
                partial.extend(m for m in missing if m not in partial)
        out.append(ServiceDecl(name=name, namespace=ns, ports=tuple(ports), endpoints=(),
                               workloads=tuple(wl for _, wl in selected), deps=deps, declares_deps=declares,
                               span=doc.span("/metadata/name"), source="Kubernetes",
                               manifest=UserObject.of(doc.data, name, ns, doc.span("")),
                               workload_manifests=tuple(UserObject.of(w.data, wl.name, ns, w.span(""))
                                                        for w, wl in selected),
                               inference_partial=tuple(partial)))
    return out


# Env values that look like addresses but name no service: versions (2.1.3, v0.6.10), files (dist/x.js,
# config.yaml), and this pod itself (localhost, loopback addresses)
_VERSION = re.compile(r"v?[0-9]+(?:\.[0-9]+)*(?:[-+][0-9a-z.-]*)?")
_FILE_SUFFIXES = frozenset({"js", "mjs", "css", "html", "htm", "json", "yaml", "yml", "toml", "ini", "conf", "cfg",
                            "txt", "log", "pem", "crt", "key", "xml", "csv", "sql", "sh", "py", "jar", "war", "so",
                            "map", "png", "svg", "ico", "jpg", "gz", "zip", "tar", "env", "properties", "lock"})
_LOCAL = frozenset({"localhost", "0.0.0.0", "::", "::1", "ip6-localhost", "ip6-loopback"})
# env names whose bare-word value is a host (FLAGD_HOST=flagd, with the port in FLAGD_PORT)
_HOST_NAMES = re.compile(r".*_(?:HOST|HOSTNAME|ADDR|ADDRESS|SERVICE_HOST)")
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of `$(NAME)` in env values: a variable defined before in the container (or by
    envFrom) is substituted, `$$` is a `$`, anything else stays as written."""
    return _VAR_REF.sub(lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


def _not_an_address(host: str) -> bool:
    if host in _LOCAL or host.startswith("127.") or _VERSION.fullmatch(host):
        return True
    labels = host.split(".")
    return len(labels) > 1 and labels[-1] in _FILE_SUFFIXES


def _config_values(doc: Document) -> dict[str, str]:
    """A ConfigMap's data, or a Secret's (stringData, and data decoded), as strings."""
    import base64

    out = {str(k): str(v) for k, v in (_get(doc.data, "data", default={}) or {}).items()} \
        if doc.kind == "ConfigMap" else {}
    if doc.kind == "Secret":
        for k, v in (_get(doc.data, "data", default={}) or {}).items():
            try:
                out[str(k)] = base64.b64decode(str(v), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                continue
        out.update({str(k): str(v) for k, v in (_get(doc.data, "stringData", default={}) or {}).items()})
    return out


def configs(docs: list[Document]) -> dict[tuple[str, str, str], dict[str, str]]:
    """(kind, namespace, name) -> values, of the ConfigMaps and Secrets among the inputs."""
    out = {}
    for doc in docs:
        if (doc.api_version, doc.kind) in CONFIG_KINDS:
            name = _get(doc.data, "metadata", "name")
            ns = _get(doc.data, "metadata", "namespace", default=DEFAULT_NAMESPACE)
            if isinstance(name, str) and isinstance(ns, str):
                out[(doc.kind, ns, name)] = _config_values(doc)
    return out


def container_env(c: dict, base: str, ns: str, configs: dict[tuple[str, str, str], dict[str, str]]):
    """A container's environment as it sees it (envFrom and valueFrom read from the ConfigMaps and Secrets among
    the inputs, `$(VAR)` expanded): (name -> value, name -> (pointer, where from: "", "ConfigMap X", "Secret X"),
    what could not be read). `base` is the container's JSON pointer."""
    env: dict[str, str] = {}
    where: dict[str, tuple[str, str]] = {}
    partial: list[str] = []
    for fi, source in enumerate(_get(c, "envFrom", default=[]) or []):
        if not isinstance(source, dict):
            continue
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(field)
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                continue
            values = configs.get((kind, ns, ref["name"]))
            if values is None:
                if not ref.get("optional"):
                    partial.append(f"envFrom {kind} {ref['name']} is not among the inputs")
                continue
            prefix = str(source.get("prefix") or "")
            for k, v in values.items():
                env[prefix + k] = v
                where[prefix + k] = (f"{base}/envFrom/{fi}", f"{kind} {ref['name']}")
    for ei, e in enumerate(_get(c, "env", default=[]) or []):
        name = _get(e, "name")
        if not isinstance(name, str):
            continue
        ptr = f"{base}/env/{ei}"
        value = _get(e, "value")
        if isinstance(value, str):
            env[name], where[name] = _expand(value, env), (ptr + "/value", "")
            continue
        for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            ref = _get(e, "valueFrom", field)
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                continue
            got = (configs.get((kind, ns, ref["name"])) or {}).get(str(ref.get("key")))
            if got is None:
                if not ref.get("optional"):
                    partial.append(f"env {name} takes key {ref.get('key')!r} of {kind} {ref['name']}, which "
                                   "is not among the inputs")
            else:
                env[name], where[name] = got, (ptr + "/valueFrom", f"{kind} {ref['name']}")
    return env, where, partial


def containers(workload: Document):
    """(JSON pointer, container) of a workload's pod template: init containers first."""
    spec = _get(workload.data, "spec", "template", "spec", default={})
    for group in ("initContainers", "containers"):
        items = _get(spec, group, default=[])
        if isinstance(items, list):
            for ci, c in enumerate(items):
                if isinstance(c, dict):
                    yield f"/spec/template/spec/{group}/{ci}", c


def _env_refs(workload: Document, ns: str, self_name: str,
              configs: dict[tuple[str, str, str], dict[str, str]]) -> tuple[list[DepRef], list[str]]:
    """Env values that may name a service, as the container sees them (`container_env`), for `resolve` to bind;
    and what could not be read (a ConfigMap or Secret that is not among the inputs): inference is partial then."""
    refs: list[DepRef] = []
    partial: list[str] = []
    for base, c in containers(workload):
        env, where, missing = container_env(c, base, ns, configs)
        partial.extend(missing)
        for name, value in env.items():
            ptr, source = where[name]
            host = _host(name, value.strip())
            if host is None or host.split(".")[0] == self_name:
                continue
            shown = f"env {name} (from {source})" if source.startswith("Secret") else \
                f"env {name}={value} (from {source})" if source else f"env {name}={value}"
            refs.append(DepRef(host, ns, True, workload.span(ptr), shown))
    return refs, partial


def _host(name: str, value: str) -> str | None:
    """The host an env value names, or None when it names none: host[:port] (optionally behind a scheme), or
    a bare word in a variable whose name says it is a host (FLAGD_HOST=flagd)."""
    m = _ADDRESS.match(value)
    if not m:
        return None
    host = m.group("host")
    if m.group("port") is None and "://" not in value:
        if "/" in value or "." not in value and not _HOST_NAMES.fullmatch(name):
            return None  # a path (dist/x.js), or a bare word ("1", "info") in a variable that is no host
    return None if _not_an_address(host) else host
