"""The cluster's objects as the compiler's input: the same parse, resolve and lowering as files.

Input: the objects the controller watches (meshforge's kinds, Services, workloads, ConfigMaps, the
user's VirtualServices and HTTPRoutes), kept as the API server last sent them. Output: `(Model,
Diagnostics)` from `pipeline.build_model`, each object a document named `<Kind>/<namespace>/<name>` so a
diagnostic says which object it is about; and the objects a diagnostic made the controller leave out.

An object whose own parse or resolution fails is left out and the rest compiled again without it (up to
`MAX_ROUNDS` rounds), so one broken Sandbox holds back itself only; its diagnostics go to its status.
Objects meshforge made (`app.kubernetes.io/managed-by: meshforge`) are never inputs: the fork's
Deployment is not a workload to fork again. Each object is parsed once per resourceVersion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..diagnostics import Diagnostic, Diagnostics
from ..model import Model
from ..ownership import is_managed
from ..pipeline import build_model
from ..source import Document
from ..spec.decls import Decls
from ..spec.parse import parse_file
from . import kube

CR_KINDS = (kube.BASELINE, kube.SANDBOX, kube.ROUTE_GROUP)
INPUT_KINDS = (*CR_KINDS, kube.SERVICE, kube.CONFIG_MAP, kube.DEPLOYMENT, kube.STATEFUL_SET, kube.ROLLOUT,
               kube.VIRTUAL_SERVICE, kube.HTTP_ROUTE, kube.GRPC_ROUTE)
MAX_ROUNDS = 4
_KEEP_META = ("name", "namespace", "labels", "annotations")
_OBJECT_META = ("name", "namespace", "labels", "annotations", "ownerReferences")

Key = tuple[str, str, str, str]  # (group, kind, namespace, name)


def key_of(obj: dict) -> Key:
    meta = obj.get("metadata") or {}
    api = str(obj.get("apiVersion", ""))
    return (api.rsplit("/", 1)[0] if "/" in api else "", str(obj.get("kind", "")), str(meta.get("namespace", "")),
            str(meta.get("name", "")))


def origin(key: Key) -> str:
    """What diagnostics call the object: `Sandbox/shop/pr-1`."""
    return f"{key[1]}/{key[2]}/{key[3]}"


def as_input(obj: dict) -> dict:
    """The object as a file would hold it: no status, no fields the API server keeps for itself."""
    meta = obj.get("metadata") or {}
    keep = _KEEP_META if kube.kind_of(obj) in CR_KINDS else _OBJECT_META
    out = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
           "metadata": {k: meta[k] for k in keep if meta.get(k) not in (None, {}, [])}}
    for k, v in obj.items():
        if k not in ("apiVersion", "kind", "metadata", "status"):
            out[k] = v
    return out


@dataclass
class _Parsed:
    version: str
    decls: Decls
    k8s: list[Document]
    diagnostics: list[Diagnostic]


@dataclass
class Compiled:
    model: Model | None
    diagnostics: Diagnostics
    left_out: dict[Key, list[Diagnostic]] = field(default_factory=dict)  # object -> why it was left out
    by_object: dict[Key, list[Diagnostic]] = field(default_factory=dict)  # object -> every diagnostic about it


class ClusterInputs:
    def __init__(self, namespace: str = "default"):
        self.namespace = namespace
        self.objects: dict[Key, dict] = {}
        self._parsed: dict[Key, _Parsed] = {}

    def put(self, obj: dict) -> None:
        if is_managed((obj.get("metadata") or {}).get("labels")):
            self.remove(obj)
            return
        self.objects[key_of(obj)] = obj

    def remove(self, obj: dict) -> None:
        k = key_of(obj)
        self.objects.pop(k, None)
        self._parsed.pop(k, None)

    def _parse(self, k: Key, obj: dict) -> _Parsed:
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        hit = self._parsed.get(k)
        if hit is not None and hit.version == version and version:
            return hit
        d = Diagnostics()
        decls, k8s = parse_file([Document(origin(k), 0, as_input(obj))], d, self.namespace)
        hit = self._parsed[k] = _Parsed(version, decls, k8s, d.items)
        return hit

    def compile(self, now: datetime, skip: set[Key] = frozenset()) -> Compiled:
        """The model of every input but `skip` (objects being deleted) and those that fail."""
        by_origin = {origin(k): k for k in self.objects}
        left_out: dict[Key, list[Diagnostic]] = {}
        for _ in range(MAX_ROUNDS):
            diags = Diagnostics()
            parts, k8s = [], []
            for k in sorted(self.objects):
                if k in skip or k in left_out:
                    continue
                p = self._parse(k, self.objects[k])
                diags.extend(p.diagnostics)
                parts.append(p.decls)
                k8s.extend(p.k8s)
            model = build_model(parts, k8s, diags, now)
            by_object: dict[Key, list[Diagnostic]] = {}
            for d in diags.items:
                k = by_origin.get(d.span.file) if d.span is not None else None
                if k is not None:
                    by_object.setdefault(k, []).append(d)
            failing = {k for k, items in by_object.items() if any(d.severity == "error" for d in items)}
            if model is not None or not failing:
                for k, items in left_out.items():
                    by_object.setdefault(k, []).extend(items)
                return Compiled(model, diags, left_out, by_object)
            for k in failing:
                left_out[k] = [d for d in by_object[k] if d.severity == "error"]
        return Compiled(None, diags, left_out, by_object)
