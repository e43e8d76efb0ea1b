"""The CustomResourceDefinitions of the file kinds, generated from `schemas/` (one source).

Input: the JSON Schemas of Sandbox, Baseline and RouteGroup. Output: `apiextensions.k8s.io/v1` CRDs
(`deploy/crds/`, kept equal by a test) whose `spec` schema is the file kind's, made structural:
`$ref`s inlined; `const` as a one-value `enum`; what OpenAPI v3 in a CRD cannot say is left to
meshforge's own validation, which the controller runs on every object and reports in its status
(`propertyNames`, `uniqueItems`, `errorMessage`, and `additionalProperties: false`, which the API
server's strict field validation — kubectl's default — enforces anyway); `oneOf`/`anyOf`/`not` stay
where they only require fields (allowed in a structural schema). A status subresource with the
conditions the controller writes, and the printer columns `kubectl get` shows.
"""

from __future__ import annotations

import copy

from ..spec.schema import load_schema

GROUP = "meshforge.dev"
VERSION = "v1alpha1"
PLURALS = {"Sandbox": "sandboxes", "Baseline": "baselines", "RouteGroup": "routegroups"}
SHORT_NAMES = {"Sandbox": ["sbx"], "Baseline": ["bl"], "RouteGroup": ["rg"]}
_DROP = {"$schema", "$id", "propertyNames", "uniqueItems", "errorMessage", "examples", "$comment"}
_LOGIC = ("oneOf", "anyOf", "allOf", "not")

_CONDITION = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "description": "Ready, WorkloadsReady, RoutesProgrammed or Expired."},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "description": "A CamelCase word for machines."},
        "message": {"type": "string", "description": "What a person needs to know."},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
    },
}


def _status(kind: str) -> dict:
    props = {
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0,
                               "description": "The generation of the spec this status describes."},
        "conditions": {"type": "array", "items": _CONDITION, "x-kubernetes-list-type": "map",
                       "x-kubernetes-list-map-keys": ["type"]},
    }
    if kind in ("Sandbox", "RouteGroup"):
        props["routingKey"] = {"type": "string", "description": "The routing key requests carry to reach it."}
        props["previewURL"] = {"type": "string", "description": "The edge's preview URL for the key, when the "
                               "Baseline's edge has a previewDomain."}
    return {"type": "object", "description": "What the controller observed and did.", "properties": props}


def _only_requires(schema: object) -> bool:
    """A combinator branch that only requires fields (or combines such branches)."""
    if isinstance(schema, list):
        return all(_only_requires(s) for s in schema)
    if not isinstance(schema, dict):
        return False
    return all(k == "required" or (k in _LOGIC and _only_requires(v)) for k, v in schema.items())


def structural(schema: dict, defs: dict) -> dict:
    """One JSON Schema node as a structural OpenAPI v3 schema."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    out: dict = {}
    for k, v in schema.items():
        if k in _DROP:
            continue
        if k == "const":
            out["enum"] = [v]
        elif k == "additionalProperties":
            if isinstance(v, dict) and "properties" not in schema:
                out[k] = structural(v, defs)  # a map: the values' schema
        elif k == "properties":
            out[k] = {name: structural(s, defs) for name, s in v.items()}
        elif k == "items":
            out[k] = structural(v, defs)
        elif k in _LOGIC:
            if _only_requires(v):
                out[k] = copy.deepcopy(v)
        else:
            out[k] = copy.deepcopy(v)
    if "type" not in out and "enum" in out:
        out["type"] = "string" if all(isinstance(x, str) for x in out["enum"]) else "integer"
    if "type" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def crd(kind: str) -> dict:
    schema = load_schema(kind)
    defs = schema.get("$defs", {})
    spec = structural(schema["properties"]["spec"], defs)
    plural = PLURALS[kind]
    columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    if kind in ("Sandbox", "RouteGroup"):
        columns = [
            {"name": "Key", "type": "string", "jsonPath": ".status.routingKey"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            *([{"name": "Expires", "type": "string", "jsonPath": ".spec.expiresAt"}] if kind == "Sandbox" else []),
            *columns,
        ]
    else:
        columns = [{"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                   *columns]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "meshforge"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": SHORT_NAMES[kind], "categories": ["meshforge"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": schema.get("description", ""),
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": _status(kind),
                    },
                }},
            }],
        },
    }


def all_crds() -> list[dict]:
    return [crd(k) for k in ("Baseline", "RouteGroup", "Sandbox")]
