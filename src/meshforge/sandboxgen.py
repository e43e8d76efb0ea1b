"""`meshforge sandbox create`: a Sandbox spec for a CI pipeline, from a branch name and images.

Input: a name or a branch, forks (SERVICE=IMAGE), env changes, a TTL and labels. Output: the Sandbox
as YAML text, or a `ValueError` naming the argument that is wrong. The text validates as a Sandbox.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

from .model import rfc3339
from .names import dns1123_label, label_key, label_value
from .spec.schema import load_schema
from .yamlout import dump_yaml


def _schema_pattern(*path: str) -> re.Pattern:
    """A field's pattern from the Sandbox schema, the one source of truth, as a full match."""
    node = load_schema("Sandbox")
    for key in path:
        node = node[key]
    return re.compile(node["pattern"].removeprefix("^").removesuffix("$"))


_FORK = ("properties", "spec", "properties", "forks", "items", "properties")
_WORKLOAD = (*_FORK, "to", "properties", "workload", "properties")
_IMAGE = _schema_pattern(*_WORKLOAD, "images", "items", "properties", "image")
_ENV_NAME = _schema_pattern(*_WORKLOAD, "env", "items", "properties", "name")
_SERVICE = _schema_pattern(*_FORK, "service")
_TTL = re.compile(r"([0-9]+)([mhd])")


_HASHED = re.compile(r".*-[0-9a-f]{12}")


def name_from_branch(branch: str) -> str:
    """`feature/login` → `feature-login-<hash>`: lower case, every other character a '-', at most 63
    characters. Whenever that changed the text (`feature/login`, `Feature_Login` and `feature-login` would
    all give `feature-login`) or cut it, the name ends with 12 hex digits of a hash of the whole branch, so
    two branches never get one name and one author's branch cannot take another's routing key. A branch that
    is already a name stays as it is, unless it ends like a hashed name (`-` and 12 hex digits): copying
    another branch's name as a branch of one's own gives a name of its own too."""
    name = re.sub(r"[^a-z0-9]", "-", branch.lower()).strip("-")
    if not name:
        raise ValueError(f"--branch {branch!r} has no letter or digit to make a name from")
    if name == branch and len(name) <= 63 and not _HASHED.fullmatch(name):
        return name
    digest = hashlib.sha256(branch.encode()).hexdigest()[:12]
    return f"{name[:50].rstrip('-')}-{digest}"


def parse_ttl(text: str) -> timedelta:
    m = _TTL.fullmatch(text.strip())
    if not m or int(m[1]) == 0:
        raise ValueError(f"--ttl {text!r}: write a duration like 90m, 72h or 3d")
    n = int(m[1])
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[m[2]]


def sandbox_spec(name: str, forks: list[str], env: list[str], namespace: str | None, labels: list[str],
                 ttl: str | None, now: datetime) -> str:
    if not dns1123_label(name):
        raise ValueError(f"NAME {name!r}: lower-case letters, digits and '-', at most 63 characters")
    if not forks:
        raise ValueError("--fork SERVICE=IMAGE: give at least one")
    workloads: dict[str, dict] = {}
    for f in forks:
        service, sep, image = f.partition("=")
        if not sep or not _SERVICE.fullmatch(service) or not _IMAGE.fullmatch(image):
            raise ValueError(f"--fork {f!r}: write SERVICE=IMAGE, e.g. cartservice=registry.example/cart:pr-42")
        if service in workloads:
            raise ValueError(f"--fork {f!r}: {service} is forked twice")
        workloads[service] = {"images": [{"image": image}]}
    for e in env:
        service, sep, rest = e.partition(":")
        var, eq, value = rest.partition("=")
        if not sep or not eq or not _ENV_NAME.fullmatch(var):
            raise ValueError(f"--env {e!r}: write SERVICE:NAME=VALUE, e.g. cartservice:FEATURE_X=on")
        if service not in workloads:
            raise ValueError(f"--env {e!r}: {service} is not among the --fork services")
        workloads[service].setdefault("env", []).append({"name": var, "value": value})
    meta: dict = {"name": name}
    if namespace is not None:
        if not dns1123_label(namespace):
            raise ValueError(f"--namespace {namespace!r}: not a Kubernetes namespace name")
        meta["namespace"] = namespace
    parsed_labels = {}
    for item in labels:
        k, sep, v = item.partition("=")
        if not sep or not label_key(k) or not label_value(v):
            raise ValueError(f"--label {item!r}: write K=V with a Kubernetes label key and value")
        parsed_labels[k] = v
    if parsed_labels:
        meta["labels"] = parsed_labels
    spec: dict = {}
    if ttl is not None:
        spec["expiresAt"] = rfc3339((now + parse_ttl(ttl)).replace(microsecond=0))
    spec["forks"] = [{"service": s, "to": {"workload": w}} for s, w in workloads.items()]
    doc = {"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox", "metadata": meta, "spec": spec}
    return dump_yaml(doc)
