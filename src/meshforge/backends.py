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


def _xds(model: Model, opts: Options, diags: Diagnostics) -> dict[str, str]:
    from .emit.xds.backend import render_xds

    return render_xds(model, opts, diags)


def _envoy_static(model: Model, opts: Options, diags: Diagnostics) -> dict[str, str]:
    from .emit.xds.backend import render_static

    return render_static(model, opts, diags)


# imported lazily: `render --format istio` never loads the Envoy protobuf modules
BACKENDS = {"istio": _istio, "xds": _xds, "envoy-static": _envoy_static}


def render(model: Model, fmt: str, opts: Options, diags: Diagnostics) -> dict[str, str]:
    return BACKENDS[fmt](model, opts, diags)


def stream(files: dict[str, str]) -> str:
    return "---\n".join(files[k] for k in sorted(files))
