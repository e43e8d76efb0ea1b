"""Command line: click glue only. Exit 0 ok, 1 invalid input or a difference, 2 usage."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import click

from . import __version__
from .diagnostics import render_json, render_text
from .pipeline import compile_paths
from .resolve import parse_time


class _Time(click.ParamType):
    name = "RFC3339"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(value)
        except ValueError as e:
            self.fail(f"{value!r} is not an RFC 3339 time ({e}); write it like 2026-12-01T00:00:00Z", param, ctx)


def _paths(f):
    return click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))(f)


def _now(f):
    return click.option("--now", type=_Time(), default=None,
                        help="Fix the clock for expiresAt (RFC 3339), for reproducible output.")(f)


def _diag_format(f):
    return click.option("--diagnostics-format", "diag_format", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help="How problems are reported.")(f)


def _emit_diagnostics(diags, fmt: str, stream) -> None:
    items = diags.items
    if fmt == "json":
        stream.write(render_json(items))
    elif items:
        stream.write(render_text(items))


def load_or_exit(paths, now, fmt="text"):
    """Compile the model, print diagnostics to stderr, exit 1 on errors."""
    model, diags = compile_paths(list(paths), now or datetime.now(timezone.utc))
    _emit_diagnostics(diags, fmt, sys.stderr)
    if model is None:
        sys.exit(1)
    return model


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshforge")
def main() -> None:
    """meshforge: service branching for Envoy and Istio.

    Reads Baseline, Sandbox and RouteGroup specs (and Kubernetes Services), and compiles them into
    proxy configuration that sends each routing key to its sandbox and everything else to the baseline.
    """


@main.command()
@_paths
@_now
@_diag_format
def validate(paths, now, diag_format):
    """Check specs; report every problem with file:line:column. Exit 0 valid, 1 invalid."""
    model, diags = compile_paths(list(paths), now or datetime.now(timezone.utc))
    _emit_diagnostics(diags, diag_format, sys.stdout)
    if model is None:
        sys.exit(1)
    if diag_format == "text":
        active = sum(1 for s in model.sandboxes if not s.expired)
        click.echo(f"valid: {len(model.services)} services, {active} active sandboxes "
                   f"({len(model.sandboxes) - active} expired), {len(model.keys)} routing keys")


@main.command()
@_paths
@click.option("--from", "start", required=True, help="The service the request enters: name, name.namespace or FQDN.")
@click.option("--routing-key", "key", required=True, help="The routing key the request carries.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_now
def explain(paths, start, key, output, now):
    """Show which version of every reachable service a request with KEY reaches."""
    from .explain import explain as run, render_text as render
    from .diagnostics import did_you_mean

    model = load_or_exit(paths, now)
    svc = model.lookup(start)
    if svc is None:
        hint = did_you_mean(start, [s.name for s in model.services] + [s.id for s in model.services])
        raise click.UsageError(f"unknown service {start!r}" + (f"; {hint}" if hint else ""))
    result = run(model, svc, key)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render(result), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
