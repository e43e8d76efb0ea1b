"""Strict validators built from Istio's own CRD schemas (../shared/istio/crd-all.gen.yaml) and the Gateway
API's (../shared/gateway-api/, v1.6.1).

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

from .conftest import ISTIO_CRDS, SHARED

GATEWAY_CRDS = SHARED / "gateway-api"


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


def _validator(crd: dict, v: dict) -> jsonschema.Draft7Validator:
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
    schema.setdefault("properties", {}).update({
        "apiVersion": {"type": "string", "enum": [f"{group}/{v['name']}"]},
        "kind": {"type": "string", "enum": [kind]},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 253,
                     "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
            "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}},
    })
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    return jsonschema.Draft7Validator(strict(schema))


@lru_cache(maxsize=None)
def validators(version: str = "v1") -> dict:
    out = {}
    with open(ISTIO_CRDS) as f:
        for crd in yaml.safe_load_all(f):
            if not crd or crd["spec"]["group"] not in ("networking.istio.io", "security.istio.io"):
                continue
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    out[crd["spec"]["names"]["kind"]] = _validator(crd, v)
    return out


@lru_cache(maxsize=None)
def gateway_validators() -> dict:
    """(apiVersion, kind) -> validator, for every served version of the Gateway API CRDs (v1.6.1)."""
    out = {}
    for path in sorted(GATEWAY_CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for v in crd["spec"]["versions"]:
                if v.get("served"):
                    out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = _validator(crd, v)
    return out


def with_defaults(schema: dict, value):
    """`value` with the schema's `default`s filled in, as the API server does before validating."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        out = {k: with_defaults(props.get(k) or {}, v) for k, v in value.items()}
        for k, sub in props.items():
            if k not in out and "default" in sub:
                out[k] = with_defaults(sub, copy.deepcopy(sub["default"]))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(schema["items"], v) for v in value]
    return value


def kubernetes_errors(obj: dict) -> list[str]:
    """A core Kubernetes object checked, strictly, against the upstream schemas (kubernetes-validate)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(map(str, e.path))}: {e.message}"]
    return []


CORE_GROUPS = ("v1", "discovery.k8s.io/v1", "apps/v1")


def gateway_errors(obj: dict) -> list[str]:
    """What `render --format gateway-api` emits: Gateway API objects against their CRDs, and the Services and
    EndpointSlices it renders for static endpoints against Kubernetes' own schemas."""
    if obj.get("apiVersion") in CORE_GROUPS:
        return kubernetes_errors(obj)
    v = gateway_validators().get((obj.get("apiVersion"), obj.get("kind")))
    if v is None:
        return [f"no served Gateway API CRD for {obj.get('apiVersion')} {obj.get('kind')}"]
    obj = with_defaults(v.schema, obj)
    out = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]
    return out + cel_errors(v.schema, obj)


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
    """An Istio object against the CRD schema of its own API version (a user's v1alpha3 VirtualService stays
    v1alpha3 in the output)."""
    version = str(obj.get("apiVersion", "")).rpartition("/")[2] or "v1"
    v = validators(version)[obj["kind"]]
    out = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]
    return out + cel_errors(v.schema, obj)
