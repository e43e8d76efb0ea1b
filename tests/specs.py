"""The one builder of spec documents for the tests: Sandbox and RouteGroup files as YAML text, laid out the same
way every time (diagnostics' lines and columns in tests depend on it)."""

from __future__ import annotations

import json

import yaml


def _scalar(text: str) -> str:
    """`text` as YAML reads it back: plain when it reads as that very string, else quoted (`on`, `1e3`, `y: z`)."""
    try:
        plain = yaml.safe_load(text) == text
    except yaml.YAMLError:
        plain = False
    return text if plain and text.strip() == text and "#" not in text else json.dumps(text)


def _to(destination) -> list[str]:
    """A fork's `to`: a host name (str), a port on 127.0.0.1 (int: static endpoints), or a mapping written as
    it is (JSON is YAML's flow style)."""
    if isinstance(destination, bool):
        raise TypeError("a fork's destination is a host, a port or a mapping")
    if isinstance(destination, str):
        return ["    to:", f"      host: {_scalar(destination)}"]
    if isinstance(destination, int):
        return ["    to:", f"      endpoints: [{{address: 127.0.0.1, port: {destination}}}]"]
    return [f"    to: {json.dumps(destination, sort_keys=True)}"]


def sandbox(name: str, *forks: tuple, key: str | None = None, labels: str = "",
            expires: str | None = None, namespace: str = "shop") -> str:
    """A Sandbox forking each (service, destination) of `forks` (`_to`); `labels` is YAML flow text."""
    lines = ["apiVersion: meshforge.dev/v1alpha1", "kind: Sandbox", "metadata:", f"  name: {_scalar(name)}",
             f"  namespace: {_scalar(namespace)}"]
    if labels:
        lines.append(f"  labels: {labels}")
    lines.append("spec:")
    if key:
        lines.append(f"  routingKey: {key}")
    if expires:
        lines.append(f'  expiresAt: "{expires}"')
    lines.append("  forks:")
    for service, destination in forks:
        lines += [f"  - service: {_scalar(service)}", *_to(destination)]
    return "\n".join(lines) + "\n"


def route_group(name: str, sandboxes: list[str] | None = None, labels: str | None = None,
                key: str | None = None) -> str:
    lines = ["apiVersion: meshforge.dev/v1alpha1", "kind: RouteGroup", "metadata:", f"  name: {name}", "spec:"]
    if key:
        lines.append(f"  routingKey: {key}")
    lines.append("  match:")
    if sandboxes is not None:
        lines.append(f"    sandboxes: [{', '.join(sandboxes)}]")
    if labels is not None:
        lines.append(f"    labels: {labels}")
    return "\n".join(lines) + "\n"
