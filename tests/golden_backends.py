"""Backends whose outputs golden cases record. Each takes a Model and returns {relative file name: text}.

A backend that reports errors records only its diagnostics (the CLI writes nothing then either).
"""

from __future__ import annotations

from meshforge.backends import Options, render
from meshforge.diagnostics import Diagnostics, render_text


def _backend(fmt: str):
    def run(model) -> dict[str, str]:
        diags = Diagnostics()
        files = render(model, fmt, Options(), diags)
        if diags.has_errors:
            return {f"{fmt}/diagnostics.txt": render_text(diags.items)}
        out = {f"{fmt}/{name}": text for name, text in files.items()}
        if diags.items:
            out[f"{fmt}/diagnostics.txt"] = render_text(diags.items)
        return out

    return run


BACKENDS = [_backend("istio"), _backend("xds"), _backend("envoy-static")]
