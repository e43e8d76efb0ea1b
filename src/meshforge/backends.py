"""Backends by name: each turns a `Model` into {relative path: text}.

Input: model, backend options, diagnostics. Output: files; `render` without `-o` joins them into one
YAML stream in path order. A backend that cannot express part of the model reports an error
diagnostic (nothing is written then) rather than dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Diagnostics
from .model import Model


@dataclass(frozen=True)
class Options:
    outbound_port: int = 15001
    admin_port: int = 15000


def _istio(model: Model, opts: Options, diags: Diagnostics) -> dict[str, str]:
    from .emit import istio

    return istio.render_files(model, diags)


BACKENDS = {"istio": _istio}


def register(name: str, fn) -> None:
    BACKENDS[name] = fn


def render(model: Model, fmt: str, opts: Options, diags: Diagnostics) -> dict[str, str]:
    if fmt not in BACKENDS:
        _load_optional()
    return BACKENDS[fmt](model, opts, diags)


def _load_optional() -> None:
    try:
        from .emit.xds import backend  # noqa: F401  (registers xds and envoy-static)
    except ImportError:  # pragma: no cover
        pass


def names() -> list[str]:
    return ["istio", "xds", "envoy-static"]


def stream(files: dict[str, str]) -> str:
    return "---\n".join(files[k] for k in sorted(files))
