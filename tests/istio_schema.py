"""Strict validators built from Istio's own CRD schemas (../shared/istio/crd-all.gen.yaml).

Unknown fields are rejected: every object schema with `properties` gets `additionalProperties: false`
(unless it preserves unknown fields), and `nullable` becomes a null type. The CRDs' CEL rules
(`x-kubernetes-validations`) are evaluated too, with the `common-expression-language` package (plus
the one Kubernetes string extension they use, `substring`), as the API server would.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import cel
import jsonschema
import yaml

from .conftest import ISTIO_CRDS


def strict(schema):
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def validators(version: str = "v1") -> dict:
    out = {}
    with open(ISTIO_CRDS) as f:
        for crd in yaml.safe_load_all(f):
            if not crd or crd["spec"]["group"] != "networking.istio.io":
                continue
            for v in crd["spec"]["versions"]:
                if v["name"] != version:
                    continue
                schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {}).update({
                    "apiVersion": {"type": "string", "enum": [f"networking.istio.io/{version}"]},
                    "kind": {"type": "string", "enum": [crd["spec"]["names"]["kind"]]},
                    "metadata": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "maxLength": 253,
                                 "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
                        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}},
                })
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
                s = strict(schema)
                out[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(s)
    return out


def _cel(rule: str, value) -> bool:
    ctx = cel.Context()
    ctx.add_function("substring", lambda s, start, end: s[start:end])
    ctx.add_variable("self", value)
    return cel.evaluate(rule, ctx) is True


def cel_errors(schema: dict, value, path: str = "") -> list[str]:
    """Every x-kubernetes-validations rule on the way down `value` that does not hold."""
    out = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if not _cel(rule["rule"], value):
            out.append(f"{path or '/'}: {rule.get('message') or rule['rule']}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
            if sub is not None:
                out.extend(cel_errors(sub, v, f"{path}/{k}"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out.extend(cel_errors(schema["items"], v, f"{path}/{i}"))
    return out


def errors(obj: dict) -> list[str]:
    v = validators()[obj["kind"]]
    out = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]
    return out + cel_errors(v.schema, obj)
