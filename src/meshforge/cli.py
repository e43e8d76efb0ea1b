"""Command line: click glue only. Exit 0 ok, 1 invalid input or a difference, 2 usage."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

import click

from . import __version__
from .diagnostics import render_json, render_text
from .pipeline import compile_paths
from .resolve import parse_time
from .xdsapi import DEFAULT_ADMIN_PORT, DEFAULT_OUTBOUND_PORT, MAX_PORT


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


def _check_routing_key(key: str) -> None:
    """A --routing-key as the specs take it, or a usage error."""
    from .names import valid_routing_key

    if not valid_routing_key(key):
        raise click.BadParameter(f"{key!r} is not a routing key (lower-case letters, digits and '-', at most 63)",
                                 param_hint="--routing-key")


def _namespace(f):
    return click.option("-n", "--namespace", "namespace", default="default", show_default=True, metavar="NS",
                        callback=_check_namespace,
                        help="The namespace of every input object that names none (as kubectl -n and helm "
                             "--namespace give it to namespace-less manifests).")(f)


def _check_namespace(ctx, param, value):
    from .names import DNS1123_LABEL_HINT, dns1123_label

    if not dns1123_label(value):
        raise click.BadParameter(f"{value!r} is not a namespace name ({DNS1123_LABEL_HINT})")
    return value


def _diag_format(f):
    return click.option("--diagnostics-format", "diag_format", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help="How problems are reported.")(f)


def _quiet(f):
    return click.option("-q", "--quiet", is_flag=True, help="Leave out notes (informative diagnostics).")(f)


def _color(stream) -> bool:
    """Colour on a terminal; plain when piped or NO_COLOR is set (no-color.org)."""
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def _emit_diagnostics(diags, fmt: str, stream, quiet: bool = False) -> None:
    items = [d for d in diags.items if not (quiet and d.severity == "note")]
    if fmt == "json":
        stream.write(render_json(items))
    elif items:
        stream.write(render_text(items, _color(stream)))


def load_or_exit(paths, now, fmt="text", quiet=False, namespace="default"):
    """Compile the model, print diagnostics to stderr, exit 1 on errors."""
    model, diags = compile_paths(list(paths), now or datetime.now(timezone.utc), namespace)
    _emit_diagnostics(diags, fmt, sys.stderr, quiet)
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


@main.command(short_help="Check specs; every problem with file:line:column.")
@_paths
@_now
@_namespace
@_diag_format
@_quiet
def validate(paths, now, namespace, diag_format, quiet):
    """Check specs and report every problem with file:line:column.

    Exit 0 when valid, 1 when not. Example: meshforge validate specs/ k8s/manifests.yaml
    """
    from .diagnostics import plural

    model, diags = compile_paths(list(paths), now or datetime.now(timezone.utc), namespace)
    _emit_diagnostics(diags, diag_format, sys.stdout, quiet)
    if model is None:
        sys.exit(1)
    if diag_format == "text":
        active = sum(1 for s in model.sandboxes if not s.expired)
        click.echo(f"valid: {plural(len(model.services), 'service')}, {plural(active, 'active sandbox', 'active sandboxes')} "
                   f"({len(model.sandboxes) - active} expired), {plural(len(model.keys), 'routing key')}")


@main.command(short_help="Show which version each hop reaches with a key.")
@_paths
@click.option("--from", "start", default=None, help="The service the request enters: name, name.namespace or FQDN.")
@click.option("--routing-key", "key", default=None, help="The routing key the request carries.")
@click.option("--url", default=None, help="A request from outside through the edge instead of --from: a preview URL "
              "(https://<key>.<previewDomain>/) or a public host's.")
@click.option("--source-address", default=None, metavar="IP",
              help="--url: the caller's address (its own routing key is kept only from a trusted source).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_now
@_namespace
@_quiet
def explain(paths, start, key, url, source_address, output, now, namespace, quiet):
    """Show which version of each service a request with KEY reaches, hop by hop; or, with --url, the
    path of a request from outside through the edge.

    \b
    Examples:
      meshforge explain specs/ --from frontend --routing-key cart-pr-42
      meshforge explain specs/ --url https://cart-pr-42.preview.example.com/
      meshforge explain specs/ --url https://shop.example.com/ --routing-key cart-pr-42 --source-address 10.0.0.7
    """
    from .diagnostics import did_you_mean
    from .explain import explain as run
    from .explain import explain_url
    from .explain import render_text as render

    if (start is None) == (url is None):
        raise click.UsageError("give either --from SERVICE (with --routing-key) or --url URL")
    if start is not None and key is None:
        raise click.UsageError("--from needs --routing-key KEY")
    if source_address is not None and url is None:
        raise click.UsageError("--source-address goes with --url")
    from .names import ROUTING_KEY_HINT, valid_routing_key

    if key is not None and not valid_routing_key(key):
        raise click.BadParameter(f"{key!r} is not a routing key ({ROUTING_KEY_HINT})", param_hint="--routing-key")
    model = load_or_exit(paths, now, quiet=quiet, namespace=namespace)
    if url is not None:
        try:
            result = explain_url(model, url, key, source_address)
        except ValueError as e:
            raise click.UsageError(str(e))
    else:
        svc = model.lookup(start)
        if svc is None:
            hint = did_you_mean(start, [s.name for s in model.services] + [s.id for s in model.services])
            raise click.UsageError(f"unknown service {start!r}" + (f"; {hint}" if hint else ""))
        result = run(model, svc, key)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render(result), nl=False)


def _render_options(f):
    """--format and every backend's options, from the backend table (each option says who uses it)."""
    from .backends import BACKENDS, all_options

    formats = "; ".join(f"{b.name}: {b.summary}" for b in BACKENDS.values())
    # click lists options in the reverse order of application: the backend options first, so that the
    # required --format heads the list in --help
    for opt in reversed(list(all_options().values())):
        users = ", ".join(b.name for b in BACKENDS.values() if opt in b.options)
        if opt.is_flag:
            f = click.option(opt.flag, opt.name, is_flag=True, default=None, help=f"{users}: {opt.help}")(f)
        else:
            f = click.option(opt.flag, opt.name, type=click.IntRange(opt.minimum, opt.maximum), default=None,
                             help=f"{users}: {opt.help} [default: {opt.default}]")(f)
    return click.option("--format", "fmt", type=click.Choice(list(BACKENDS)), required=True,
                        help=f"Output. {formats}.")(f)


def _render_files(paths, fmt, now, options, quiet=False, namespace="default"):
    from .backends import all_options, get
    from .backends import render as run
    from .diagnostics import Diagnostics

    backend = get(fmt)
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if all(o.name != name for o in backend.options):
            raise click.UsageError(f"{all_options()[name].flag} does not apply to --format {fmt}")
    model = load_or_exit(paths, now, quiet=quiet, namespace=namespace)
    diags = Diagnostics()
    files = run(model, fmt, diags, **given)
    _emit_diagnostics(diags, "text", sys.stderr, quiet)
    if diags.has_errors:
        sys.exit(1)
    return files


@main.command(short_help="Compile specs into Istio, Gateway API, Kubernetes or Envoy configuration.")
@_paths
@_render_options
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Write one file per object into this directory (atomically; stale meshforge files removed).")
@_now
@_namespace
@_quiet
def render(paths, fmt, output_dir, now, namespace, quiet, **options):
    """Compile specs into Istio, Gateway API, Kubernetes or Envoy configuration.

    Example: meshforge render specs/ --format istio -o deploy/istio
    """
    from pathlib import Path

    from .backends import stream
    from .output import OutputError, write_tree

    files = _render_files(paths, fmt, now, options, quiet, namespace)
    if not files and not quiet:
        from .backends import get

        click.echo(f"note: nothing to render for --format {fmt}: {get(fmt).empty}", err=True)
    if output_dir is None:
        click.echo(stream(files), nl=False)
        return
    try:
        r = write_tree(Path(output_dir), files, owner=fmt)
    except (OutputError, OSError) as e:
        raise click.ClickException(f"{output_dir}: {e}; nothing was changed")
    for rel in r.kept:
        click.echo(f"warning: {output_dir}/{rel} was changed since meshforge wrote it; left in place, no longer "
                   "listed as meshforge's", err=True)
    click.echo(f"{output_dir}: {r.written} written, {r.unchanged} unchanged, {r.removed} removed", err=True)


@main.command(short_help="Diff a rendered directory; exit 1 when it is stale.")
@_paths
@_render_options
@click.option("--against", type=click.Path(file_okay=False, exists=True), required=True,
              help="A directory rendered earlier (e.g. committed GitOps output).")
@_now
@_namespace
@_quiet
def diff(paths, fmt, against, now, namespace, quiet, **options):
    """Diff a rendered directory against what the specs render now; exit 1 when they differ.

    Example (CI): meshforge diff specs/ --format istio --against deploy/istio
    """
    from pathlib import Path

    from .output import OutputError, diff_tree

    files = _render_files(paths, fmt, now, options, quiet, namespace)
    try:
        text = diff_tree(Path(against), files, owner=fmt)
    except (OutputError, OSError) as e:
        raise click.ClickException(str(e))
    if text:
        click.echo(text, nl=False)
        sys.exit(1)


@main.command(short_help="Serve xDS to Envoy; push every valid change.")
@_paths
@click.option("--xds-address", required=True, help="HOST:PORT for the ADS gRPC server (port 0: any free port).")
@click.option("--admin-address", default=None, help="HOST:PORT for the dashboard (/), /api/, /healthz, /readyz, "
              "/metrics, /debug/config.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.option("--tls-cert-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve xDS (and admin) over TLS with this certificate (PEM).")
@click.option("--tls-key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's private key (PEM).")
@click.option("--client-ca-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Mutual TLS: only proxies with a certificate this CA signed may connect, each for its own "
                   "service only (DNS SAN name.namespace or spiffe://DOMAIN/ns/NS/sa/NAME).")
@click.option("--access-logs/--no-access-logs", default=True, show_default=True,
              help="Proxies send their access logs to serve (for doctor and the dashboard).")
@click.option("--access-log-rate", type=click.IntRange(0, 1_000_000), default=100, show_default=True,
              metavar="N", help="At most N logged requests a second per proxy listener (those carrying a routing "
              "key or a trace context); a load test beyond it costs no logging. 0: log every such request.")
@click.option("--admin-host", "admin_hosts", multiple=True, metavar="NAME",
              help="A host name the admin server answers to (repeatable), beside IP addresses and localhost: any "
                   "other Host gets 421, so a web page that rebinds a DNS name to this server reads nothing.")
@click.option("--admin-operator", "operators", multiple=True, metavar="SAN",
              help="Mutual TLS: a client certificate SAN (DNS name or URI) that may read the dashboard, /api/ "
                   "(doctor) and any /debug/config (repeatable). Proxies' certificates read only their own "
                   "/debug/config.")
@click.option("--max-streams-per-peer", type=click.IntRange(1, 1_000_000), default=128, show_default=True,
              metavar="N", help="ADS streams one client address may hold (a proxy holds one).")
@click.option("--stall-timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True, metavar="SECONDS",
              help="End a stream whose client has not taken a response for this long.")
@click.option("--max-pending-bytes", type=click.IntRange(1 << 20, 1 << 40), default=128 << 20, show_default=True,
              metavar="BYTES", help="Responses sent and not yet taken by their clients, over all streams: above it "
              "new streams are refused until clients take theirs (or their connections close).")
@click.option("--verify", is_flag=True, help="Debugging: after every reload compile everything again from scratch "
              "and log (meshforge_reloads_total{result=\"unverified\"}) any way the incremental result differs.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Serve the xDS port from N processes (on N cores: a snapshot reaches N times the proxies in the "
              "same time). Each reads and compiles the specs itself and holds the whole snapshot; the admin "
              "address, its metrics and /readyz are the first process's. Needs --no-access-logs.")
@click.option("--worker", is_flag=True, hidden=True, help="Internal: one of --workers' processes.")
@_namespace
def serve(paths, xds_address, admin_address, log_level, tls_cert_file, tls_key_file, client_ca_file, access_logs,
          access_log_rate, admin_hosts, operators, max_streams_per_peer, stall_timeout, max_pending_bytes, verify,
          workers, worker, namespace):
    """Serve xDS to Envoy proxies and push every valid change to PATHS.

    ADS, state of the world and delta. Example:
    meshforge serve specs/ --xds-address 0.0.0.0:18000 --admin-address 127.0.0.1:18080
    """
    from .serving import OptionError, ServeOptions, run

    options = ServeOptions(
        paths=tuple(paths), xds_address=xds_address, admin_address=admin_address, log_level=log_level,
        tls_cert_file=tls_cert_file, tls_key_file=tls_key_file, client_ca_file=client_ca_file, access_logs=access_logs,
        access_log_rate=access_log_rate, admin_hosts=tuple(admin_hosts), operators=tuple(operators),
        max_streams_per_peer=max_streams_per_peer, stall_timeout=stall_timeout, max_pending_bytes=max_pending_bytes,
        verify=verify, workers=workers, worker=worker, namespace=namespace)
    try:
        code = run(options)
    except OptionError as e:
        if e.option:
            raise click.BadParameter(str(e), param_hint=e.option)
        raise click.UsageError(str(e))
    sys.exit(code)


@main.command(short_help="Print a sidecar's (or the edge's, or the tunnel node's) Envoy bootstrap for serve.")
@click.option("--service", default=None, help="The service this sidecar belongs to: NAME or NAME.NAMESPACE.")
@click.option("--edge", is_flag=True, help="The edge proxy's bootstrap instead of a sidecar's (needs --listen-address).")
@click.option("--tunnel", is_flag=True, help="The tunnel node's, which laptops running `meshforge connect` attach to "
              "(needs --listen-address, --accept-address and the --tunnel-* files).")
@click.option("--listen-address", default=None, metavar="HOST:PORT",
              help="--edge: where the edge listens for outside traffic, e.g. 0.0.0.0:8080. --tunnel: where sidecars "
              "reach it (the Baseline's tunnel host and port), e.g. 0.0.0.0:15080.")
@click.option("--accept-address", default=None, metavar="HOST:PORT",
              help="--tunnel: where laptops dial in (TLS), e.g. 0.0.0.0:15443.")
@click.option("--tunnel-cert-file", default=None, help="--tunnel: its certificate, which laptops check (path on its "
              "machine).")
@click.option("--tunnel-key-file", default=None, help="--tunnel: its private key.")
@click.option("--tunnel-client-ca-file", default=None, help="--tunnel: the CA that signs laptops' certificates.")
@click.option("--xds-address", required=True, help="HOST:PORT of meshforge serve.")
@click.option("--outbound-port", type=click.IntRange(1, MAX_PORT), default=DEFAULT_OUTBOUND_PORT, show_default=True)
@click.option("--admin-port", type=click.IntRange(0, MAX_PORT), default=DEFAULT_ADMIN_PORT, show_default=True,
              help="Envoy admin port on 127.0.0.1 (0: none).")
@click.option("--node-id", default=None, help="node.id (default: SERVICE~hostname).")
@click.option("--delta", is_flag=True, help="Use incremental (delta) xDS instead of state of the world.")
@click.option("--tls-ca-file", default=None, help="serve uses TLS: the CA that signed its certificate (a path on "
              "the proxy's machine).")
@click.option("--tls-cert-file", default=None, help="Mutual TLS: this proxy's certificate (path on its machine).")
@click.option("--tls-key-file", default=None, help="Mutual TLS: this proxy's private key (path on its machine).")
@click.option("--transparent", is_flag=True, help="The sidecar sits behind `meshforge capture-rules`: its outbound "
              "listener takes the pod's redirected connections and routes them by their original destination.")
def bootstrap(service, edge, tunnel, listen_address, accept_address, tunnel_cert_file, tunnel_key_file,
              tunnel_client_ca_file, xds_address, outbound_port, admin_port, node_id, delta, tls_ca_file,
              tls_cert_file, tls_key_file, transparent):
    """Print an Envoy bootstrap (YAML) for one sidecar, or with --edge for the edge proxy, or with --tunnel for
    the tunnel node, pointing at meshforge serve.

    \b
    Examples:
      meshforge bootstrap --service cart.shop --xds-address meshforge.infra:18000 > envoy.yaml
      meshforge bootstrap --service cart.shop --transparent --xds-address meshforge.infra:18000 > envoy.yaml
      meshforge bootstrap --edge --listen-address 0.0.0.0:8080 --xds-address meshforge.infra:18000 > edge.yaml
      meshforge bootstrap --tunnel --listen-address 0.0.0.0:15080 --accept-address 0.0.0.0:15443 \\
          --tunnel-cert-file tunnel.crt --tunnel-key-file tunnel.key --tunnel-client-ca-file laptops-ca.crt \\
          --xds-address meshforge.infra:18000 > tunnel.yaml
    """
    from .emit.xds.backend import dump, to_dict
    from .emit.xds.bootstrap import XdsTls, ads_bootstrap
    from .emit.xds.tunnel import TunnelFiles
    from .names import parse_address
    from .xdsapi import listen_address as parse_listen

    try:
        host, port = parse_address(xds_address, listen=False)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--xds-address")

    def address(value: str, option: str) -> tuple[str, int]:
        try:
            return parse_listen(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=option)

    if sum((bool(service), edge, tunnel)) != 1:
        raise click.UsageError("say whose bootstrap: --service NAME (a sidecar), --edge or --tunnel (one of them)")
    tunnel_files = (tunnel_cert_file, tunnel_key_file, tunnel_client_ca_file)
    if not tunnel and (accept_address or any(tunnel_files)):
        raise click.UsageError("--accept-address and the --tunnel-* files are for --tunnel")
    if transparent and not service:
        raise click.UsageError("--transparent is for a sidecar; the edge and the tunnel node listen where "
                               "--listen-address says")
    listen = accept = files = None
    if edge or tunnel:
        if not listen_address:
            raise click.UsageError(f"--{'edge' if edge else 'tunnel'} needs --listen-address HOST:PORT (where "
                                   f"{'outside traffic arrives' if edge else 'sidecars send to it'})")
        listen = address(listen_address, "--listen-address")
    elif listen_address:
        raise click.UsageError("--listen-address is for --edge and --tunnel; a sidecar listens on "
                               "127.0.0.1:--outbound-port")
    if tunnel:
        if not accept_address or not all(tunnel_files):
            raise click.UsageError("--tunnel needs --accept-address HOST:PORT (where laptops dial in) and "
                                   "--tunnel-cert-file, --tunnel-key-file and --tunnel-client-ca-file (laptops "
                                   "attach over mutual TLS only)")
        accept = address(accept_address, "--accept-address")
        if accept == listen:
            raise click.UsageError("--accept-address and --listen-address must differ")
        files = TunnelFiles(*tunnel_files)
    if bool(tls_cert_file) != bool(tls_key_file):
        raise click.UsageError("--tls-cert-file and --tls-key-file go together")
    if tls_cert_file and not tls_ca_file:
        raise click.UsageError("--tls-cert-file needs --tls-ca-file (the CA of serve's certificate)")
    tls = XdsTls(tls_ca_file, tls_cert_file, tls_key_file) if tls_ca_file else None
    click.echo(dump(to_dict(ads_bootstrap(service, host, port, outbound_port, admin_port, node_id, delta, tls,
                                          edge_listen=listen if edge else None, transparent=transparent,
                                          tunnel=(listen, accept, files) if tunnel else None))), nl=False)


@main.command(short_help="Run one service on this laptop for one routing key, over a reverse tunnel.",
              context_settings={"ignore_unknown_options": False})
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--routing-key", "key", required=True, help="The key whose requests come to this laptop.")
@click.option("--to", "to", default=None, metavar="HOST:PORT", help="Where the local process listens, e.g. "
              "127.0.0.1:8080.")
@click.option("--via", default=None, metavar="HOST:PORT", help="The tunnel node's --accept-address, as this laptop "
              "reaches it.")
@click.option("--tls-ca-file", default=None, help="The CA that signed the tunnel node's certificate.")
@click.option("--tls-cert-file", default=None, help="This laptop's certificate (its subject alternative name is the "
              "fork's owner).")
@click.option("--tls-key-file", default=None, help="This laptop's private key.")
@click.option("--server-name", default=None, help="The name (DNS or IP) the tunnel node's certificate carries "
              "(default: the host of --via).")
@click.option("--http2", is_flag=True, help="The local process speaks HTTP/2 without TLS (h2c, gRPC).")
@click.option("--admin-port", type=click.IntRange(0, MAX_PORT), default=0, help="The laptop Envoy's admin port on "
              "127.0.0.1 (0: a free one).")
@click.option("--env-from", "env_from", multiple=True, metavar="PATH", help="Print the baseline workload's "
              "environment, read from these manifests (files or directories), as shell exports; with a COMMAND "
              "after --, run it with that environment while the tunnel is up.")
@click.option("--container", default=None, help="--env-from: the container (default: the pod's first).")
@_namespace
def connect(service, command, key, to, via, tls_ca_file, tls_cert_file, tls_key_file, server_name, http2,
            admin_port, env_from, container, namespace):
    """Hold a reverse tunnel from this laptop to the mesh's tunnel node, so that requests with --routing-key for
    SERVICE, anywhere in the shared environment, reach the process at --to (a Sandbox forks SERVICE for that
    key `to: {local: {owner: ...}}`); everyone else's requests are untouched. Ctrl-C leaves: the tunnel drains,
    and the key reaches the baseline again with no failed request.

    \b
    Examples:
      meshforge connect cart --routing-key alice --to 127.0.0.1:8080 --via tunnel.example.com:15443 \\
          --tls-ca-file ca.crt --tls-cert-file alice.crt --tls-key-file alice.key
      meshforge connect cart --routing-key alice --env-from k8s/      (prints the baseline's env)
    """
    import os
    import signal
    import subprocess

    from .connect import Plan, existing_file, run, service_id, shell_line
    from .connect import env_from as read_env
    from .emit.xds.tunnel import LaptopTls
    from .names import parse_address

    _check_routing_key(key)
    sid = service_id(service, namespace)
    name, _, ns = sid.partition(".")
    from .names import dns1123_label

    if not dns1123_label(name) or not dns1123_label(ns):
        raise click.BadParameter(f"{service!r} is not NAME or NAME.NAMESPACE (DNS labels)", param_hint="SERVICE")
    env: list[tuple[str, str]] = []
    if env_from:
        try:
            env, notes = read_env(list(env_from), sid, container, namespace)
        except ValueError as e:
            click.echo(f"error: --env-from: {e}", err=True)
            sys.exit(1)
        for n in notes:
            click.echo(f"note: {n}", err=True)
        if not command and to is None:  # print the environment and stop
            for k, v in env:
                click.echo(shell_line(k, v))
            return
    if to is None or via is None:
        raise click.UsageError("connect needs --to HOST:PORT (the local process) and --via HOST:PORT (the tunnel "
                               "node), or --env-from alone to print the baseline's environment")
    try:
        to_addr = parse_address(to, listen=False)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--to")
    try:
        via_addr = parse_address(via, listen=False)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--via")
    if not (tls_ca_file and tls_cert_file and tls_key_file):
        raise click.UsageError("the tunnel node takes laptops over mutual TLS only: give --tls-ca-file, "
                               "--tls-cert-file and --tls-key-file")
    try:
        tls = LaptopTls(existing_file(tls_ca_file, "--tls-ca-file"), existing_file(tls_cert_file, "--tls-cert-file"),
                        existing_file(tls_key_file, "--tls-key-file"), server_name or via_addr[0])
    except ValueError as e:
        raise click.BadParameter(str(e))
    plan = Plan(sid, key, via_addr, to_addr, tls, http2, admin_port)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    child = None
    if command:
        child = subprocess.Popen(list(command), env={**os.environ, **dict(env)})

    def should_stop() -> bool:
        return stop["now"] or (child is not None and child.poll() is not None)

    def say(line: str) -> None:
        click.echo(f"meshforge connect: {line}", err=True)

    try:
        code = run(plan, say, should_stop)
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
    sys.exit(code if child is None or code else (child.returncode or 0))


@main.command(short_help="Add the transparent sidecar to workload manifests (as istioctl kube-inject).")
@_paths
@click.option("--xds-address", required=True, help="HOST:PORT of meshforge serve, as the pods reach it.")
@click.option("--image", default=None, help="The sidecar image (meshforge and Envoy: deploy/Dockerfile.sidecar).")
@click.option("--proxy-uid", type=click.IntRange(0, 2**32 - 2), default=1337, show_default=True,
              help="The user id the sidecar runs as (its connections are not captured).")
@click.option("--outbound-port", type=click.IntRange(1, MAX_PORT), default=DEFAULT_OUTBOUND_PORT, show_default=True)
@click.option("--exclude-cidr", multiple=True, metavar="CIDR", help="Destinations left uncaptured (repeatable).")
@click.option("--exclude-port", multiple=True, type=click.IntRange(1, MAX_PORT), metavar="PORT",
              help="Destination ports left uncaptured (repeatable).")
@_quiet
def inject(paths, xds_address, image, proxy_uid, outbound_port, exclude_cidr, exclude_port, quiet):
    """Print the manifests of PATHS with meshforge's sidecar in every workload's pods: an init container that
    installs the capture rules and the Envoy sidecar (bootstrap --transparent). Other objects pass unchanged.

    \b
    Example:
      meshforge inject k8s/ --xds-address meshforge.meshforge-system:18000 | kubectl apply -f -
    """
    from .capture import Capture
    from .diagnostics import Diagnostics
    from .inject import DEFAULT_IMAGE, Sidecar
    from .inject import inject as run
    from .names import parse_address
    from .source import load_paths
    from .yamlout import dump_yaml

    try:
        parse_address(xds_address, listen=False)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--xds-address")
    try:
        capture = Capture(proxy_uid, outbound_port, tuple(exclude_cidr), tuple(exclude_port))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--exclude-cidr")
    diags = Diagnostics()
    docs = load_paths(list(paths), diags)
    out = [] if diags.has_errors else run(docs, Sidecar(xds_address, capture, image or DEFAULT_IMAGE), diags)
    _emit_diagnostics(diags, "text", sys.stderr, quiet)
    if diags.has_errors:
        sys.exit(1)  # nothing printed: no half-injected stream to apply
    click.echo("".join("---\n" + dump_yaml(d) for d in out if d is not None), nl=False)


@main.command(short_help="Send the same requests to the baseline and a sandbox; report what changed.")
@click.option("--via", required=True, metavar="URL", help="Where requests go: the edge, or a sidecar's outbound "
              "listener (http://HOST:PORT).")
@click.option("--routing-key", "key", required=True, help="The sandbox's (or route group's) routing key.")
@click.option("--cases", default=None, metavar="FILE", help="A YAML list of {name, method, path, headers, body}, "
              "or a HAR file exported by a browser or proxy.")
@click.option("--from-requests", "from_requests", default=None, metavar="ADMIN",
              help="Instead of --cases: the key-less requests the proxies logged (serve's admin HOST:PORT) for "
              "--service, replayed by method and path (no headers: never credentials).")
@click.option("--service", default=None, metavar="NAME.NAMESPACE", help="With --from-requests: whose requests.")
@click.option("--methods", default="GET,HEAD", show_default=True, help="With --from-requests: the methods replayed.")
@click.option("--host", default=None, help="The Host requests carry (default: the --via authority), e.g. cart:8080.")
@click.option("--preview-domain", default=None, help="Through the edge: send the sandbox's requests to "
              "<key>.<preview domain> instead of carrying the key (the edge removes keys from outside callers).")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Rounds per case, each two baseline requests and one sandbox request.")
@click.option("--output", type=click.Choice(["text", "json", "markdown", "junit"]), default="text", show_default=True)
@click.option("--fail-on", type=click.Choice(["breaking", "changed", "added"]), default="breaking", show_default=True,
              help="Exit 1 when a difference at or above this level is found.")
@click.option("--keep-credentials", is_flag=True, help="Replay a HAR file's authorization and cookie headers "
              "(dropped by default).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=10.0, show_default=True, help="Seconds per request.")
def compare(via, key, cases, from_requests, service, methods, host, preview_domain, repeat, output, fail_on,
            keep_credentials, timeout):
    """Send each case through --via without the routing key (twice a round: what differs between those is
    noise) and with it, compare the answers structurally, and report breaking, changed and added differences
    and the latency of each side. Exit 0: nothing at or above --fail-on; 1: differences at or above it;
    2: usage, a bad cases file, or --via unreachable.

    \b
    Example:
      meshforge compare --via http://127.0.0.1:15001 --host cart:8080 --routing-key pr-42 --cases cases.yaml
    """
    import json as _json
    import urllib.parse

    from .compare import CasesError, Comparison, Entrypoint, compare_case, load_cases

    _check_routing_key(key)
    try:
        u = urllib.parse.urlsplit(via)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise click.BadParameter(f"{via!r}: {e}", param_hint="--via")
    if u.scheme != "http" or not u.hostname or u.path not in ("", "/"):
        raise click.BadParameter(f"{via!r}: an http://HOST:PORT URL (TLS is not supported here)", param_hint="--via")
    if (cases is None) == (from_requests is None):
        raise click.UsageError("give --cases FILE or --from-requests ADMIN (one of them)")
    if from_requests is not None:
        loaded = _logged_cases(from_requests, service, methods)
    else:
        try:
            loaded = load_cases(cases, keep_credentials)
        except CasesError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
    target = Entrypoint(via, host, key, preview_domain=preview_domain, timeout=timeout)
    results = []
    for case in loaded:
        try:
            results.append(compare_case(target, case, repeat))
        except OSError as e:
            click.echo(f"error: {via} unreachable (case {case.name!r}): {e}", err=True)
            sys.exit(2)
    report = Comparison(key, results, fail_on)
    text = {"text": report.text, "markdown": report.markdown, "junit": report.junit,
            "json": lambda: _json.dumps(report.to_json(), indent=2, sort_keys=True, default=str) + "\n"}[output]()
    click.echo(text, nl=False)
    sys.exit(1 if report.failing() else 0)


def _logged_cases(admin: str, service: str | None, methods: str):
    from .adminclient import AdminClient, AdminError
    from .compare import cases_from_requests

    if not service or "." not in service:
        raise click.UsageError("--from-requests needs --service NAME.NAMESPACE")
    try:
        client = AdminClient(admin)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--from-requests")
    allowed = frozenset(m.strip().upper() for m in methods.split(",") if m.strip())
    try:
        rows = client.requests(limit=1000)
    except AdminError as e:
        click.echo(f"error: {admin}: cannot read the logged requests (/api/requests): {e}", err=True)
        sys.exit(2)
    found = cases_from_requests(rows, service, allowed)
    if not found:
        click.echo(f"error: {admin} has logged no key-less {'/'.join(sorted(allowed))} request to {service} "
                   "(access logs on? traffic yet?)", err=True)
        sys.exit(2)
    return found


@main.command("capture-rules", short_help="Print iptables rules that send a pod's outbound TCP to its sidecar.")
@click.option("--proxy-uid", required=True, type=click.IntRange(0, 2**32 - 2),
              help="The user id Envoy runs as: its own connections (to serve, to upstreams) are not captured.")
@click.option("--outbound-port", type=click.IntRange(1, MAX_PORT), default=DEFAULT_OUTBOUND_PORT, show_default=True,
              help="The sidecar's outbound port (its bootstrap's --outbound-port).")
@click.option("--exclude-cidr", multiple=True, metavar="CIDR", help="Destinations left alone (repeatable).")
@click.option("--exclude-port", multiple=True, type=click.IntRange(1, MAX_PORT), metavar="PORT",
              help="Destination ports left alone (repeatable).")
@click.option("--ipv6", is_flag=True, help="Rules for ip6tables-restore instead of iptables-restore.")
@click.option("--remove", is_flag=True, help="Rules that take the capture away again (for iptables-restore --noflush).")
def capture_rules(proxy_uid, outbound_port, exclude_cidr, exclude_port, ipv6, remove):
    """Print `iptables-restore` input (nat table) that redirects the outbound TCP connections of this network
    namespace (a pod) to the sidecar's outbound listener, except the sidecar's own (--proxy-uid), loopback,
    --exclude-cidr and --exclude-port. The sidecar's bootstrap needs --transparent.

    \b
    Examples:
      meshforge capture-rules --proxy-uid 1337 | iptables-restore
      meshforge capture-rules --proxy-uid 1337 --ipv6 | ip6tables-restore
      meshforge capture-rules --proxy-uid 1337 --remove | iptables-restore --noflush
    """
    from .capture import Capture, rules

    try:
        capture = Capture(proxy_uid, outbound_port, tuple(exclude_cidr), tuple(exclude_port), ipv6)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--exclude-cidr")
    click.echo(rules(capture, remove), nl=False)


@main.command(short_help="Show where recent requests with a key went, and the hop that lost it.")
@click.option("--admin-address", required=True, metavar="HOST:PORT", help="serve's admin address.")
@click.option("--routing-key", "key", required=True, help="The routing key to follow.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--tls-ca-file", default=None, help="serve's admin speaks HTTPS: the CA of its certificate.")
@click.option("--tls-cert-file", default=None, help="Mutual TLS: a client certificate the client CA signed.")
@click.option("--tls-key-file", default=None, help="Mutual TLS: its private key.")
def doctor(admin_address, key, output, tls_ca_file, tls_cert_file, tls_key_file):
    """Show what recent requests with KEY really reached, hop by hop, from the proxies' access logs, and
    name the service that lost the key (it received the key; its calls in the same trace carried none).

    Exit codes: 0 no loss found, 1 a loss found, 2 usage error or serve unreachable, 3 nothing to judge (no
    recent request carried the key: access logs off, the key not active, no traffic yet, or the log's budget
    spent).

    Example: meshforge doctor --admin-address 127.0.0.1:18080 --routing-key cart-pr-42
    """
    from .adminclient import AdminClient, AdminError
    from .doctor import diagnose, why_nothing
    from .doctor import render_text as render
    from .names import ROUTING_KEY_HINT, valid_routing_key

    if not valid_routing_key(key):
        raise click.BadParameter(f"{key!r} is not a routing key ({ROUTING_KEY_HINT})", param_hint="--routing-key")
    try:
        admin = AdminClient(admin_address, tls_ca_file, tls_cert_file, tls_key_file)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--admin-address")
    except AdminError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    try:
        requests, state = admin.requests(key=key), admin.state()
    except AdminError as e:  # unreachable, refused, TLS, HTTP errors, not JSON
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    overview = state.get("overview") or {}
    calls = {s["id"]: s.get("dependsOn") or [] for s in overview.get("services") or []}
    report = diagnose(key, requests, calls)
    if not report.requests:
        report.why_nothing = why_nothing(key, state)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render(report), nl=False)
    sys.exit(report.exit_code)


@main.group(short_help="Signed preview links (the edge's previewAuth).")
def preview() -> None:
    """Links to a sandbox's preview host that are safe to share: signed, scoped to one routing key, expiring."""


@preview.command("link", short_help="Print a signed link to a routing key's preview host.")
@click.option("--routing-key", "key", required=True, help="The key whose preview host the link opens.")
@click.option("--ttl", default="8h", show_default=True, help="How long the link works: 30m, 8h, 7d (at most the "
              "Baseline's previewAuth.maxTTL, default 30d).")
@click.option("--signing-key", required=True, type=click.Path(dir_okay=False), help="The EC P-256 private key (PEM) "
              "whose public key is in the Baseline's previewAuth.publicKeys.")
@click.option("--base-url", default=None, help="The preview URL to open, e.g. https://pr-42.preview.example.com/cart.")
@click.option("--preview-domain", default=None, help="Or the edge's previewDomain: the link opens "
              "https://KEY.DOMAIN/.")
@_now
def preview_link(key, ttl, signing_key, base_url, preview_domain, now):
    """Print a URL that opens KEY's preview host for --ttl: the token in it is an ES256 JWT for that key only,
    checked by the edge's Envoy. The first visit turns it into a cookie for that host and redirects to the URL
    without it; API clients may send the token as `Authorization: Bearer`. Rotating the Baseline's public keys
    revokes every link; a Sandbox's (or RouteGroup's) notBefore revokes its key's.

    \b
    Example:
      meshforge preview link --routing-key pr-42 --ttl 8h --signing-key preview.key \\
          --base-url https://pr-42.preview.example.com/
    """
    import urllib.parse

    from .preview import link, load_private_key, parse_ttl, sign

    _check_routing_key(key)
    try:
        seconds = parse_ttl(ttl)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl")
    if (base_url is None) == (preview_domain is None):
        raise click.UsageError("give --base-url URL or --preview-domain DOMAIN (one of them)")
    if base_url is None:
        from .names import dns1123_subdomain

        if not dns1123_subdomain(preview_domain):
            raise click.BadParameter(f"{preview_domain!r} is not a DNS name", param_hint="--preview-domain")
        base_url = f"https://{key}.{preview_domain}/"
    else:
        try:
            u = urllib.parse.urlsplit(base_url)
            u.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise click.BadParameter(f"{base_url!r}: {e}", param_hint="--base-url")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise click.BadParameter(f"{base_url!r} is not an http(s) URL", param_hint="--base-url")
        if not u.hostname.startswith(f"{key}."):
            click.echo(f"warning: {u.hostname} is not {key}'s preview host (<key>.<previewDomain>): the edge admits "
                       "this link there only", err=True)
        if not u.path:
            base_url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/", u.query, u.fragment))
    try:
        with open(signing_key, "rb") as f:
            pem = f.read(65536)
        private = load_private_key(pem)
    except OSError as e:
        raise click.BadParameter(f"{signing_key}: {e.strerror}", param_hint="--signing-key")
    except ValueError as e:
        raise click.BadParameter(f"{signing_key}: {e}", param_hint="--signing-key")
    click.echo(link(base_url, sign(private, key, seconds, now)))


@main.group(short_help="Create sandboxes for CI pipelines.")
def sandbox() -> None:
    """Sandboxes for CI pipelines."""


@sandbox.command("create", short_help="Print a Sandbox for a branch and its images.")
@click.argument("name", required=False)
@click.option("--branch", default=None, help="Derive NAME (and so the routing key) from this branch name.")
@click.option("--fork", "forks", multiple=True, metavar="SERVICE=IMAGE",
              help="Fork SERVICE's workload with IMAGE (repeatable).")
@click.option("--env", "env", multiple=True, metavar="SERVICE:NAME=VALUE",
              help="Set an environment variable in a forked workload (repeatable).")
@click.option("--ttl", default=None, metavar="DURATION", help="Expire after 90m, 72h, 3d, ... from now.")
@click.option("--namespace", default=None, help="The sandbox's namespace (service references resolve there).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="A label (route groups select by them).")
@_now
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Write to FILE (atomically) instead of stdout.")
def sandbox_create(name, branch, forks, env, ttl, namespace, labels, now, output):
    """Print a Sandbox spec that forks the given services with new images.

    Example (CI): meshforge sandbox create --branch "$BRANCH" --fork cartservice=registry.example/cart:$SHA --ttl 72h
    """
    from pathlib import Path

    from .output import write_file_atomically
    from .sandboxgen import name_from_branch, sandbox_spec

    if (name is None) == (branch is None):
        raise click.UsageError("give NAME or --branch (one of them)")
    try:
        if branch is not None:
            name = name_from_branch(branch)
        text = sandbox_spec(name, list(forks), list(env), namespace, list(labels), ttl,
                            now or datetime.now(timezone.utc))
    except ValueError as e:
        raise click.UsageError(str(e))
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)  # a pipeline's gitops/sandboxes/ may not exist yet
        write_file_atomically(Path(output), text)
    except OSError as e:
        raise click.ClickException(f"{output}: {e.strerror or e}")


@sandbox.command("name", short_help="Print the sandbox name (and routing key) a branch gets.")
@click.option("--branch", required=True, help="The branch name.")
def sandbox_name(branch):
    """Print the name `sandbox create --branch BRANCH` gives the sandbox (its routing key, unless set).

    Example (CI): NAME=$(meshforge sandbox name --branch "$GITHUB_HEAD_REF")
    """
    from .sandboxgen import name_from_branch

    try:
        click.echo(name_from_branch(branch))
    except ValueError as e:
        raise click.UsageError(str(e))


@sandbox.command("show", short_help="One sandbox: its key, state, expiry, preview URL and forks.")
@click.argument("name")
@_paths
@click.option("--output", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="markdown: for a pull request's comment.")
@_now
@_namespace
def sandbox_show(name, paths, output, now, namespace):
    """Show sandbox NAME as the specs in PATHS define it: routing key, whether it is active, when it expires,
    its preview URL (with an edge that has a previewDomain) and its forks (the images of workload forks).

    Exit 0 when shown, 1 when the specs are invalid or define no sandbox NAME.

    Example (CI): meshforge sandbox show feature-login gitops/ --output markdown > comment.md
    """
    from .diagnostics import did_you_mean
    from .sandboxview import describe, render_json, render_markdown, render_text

    when = now or datetime.now(timezone.utc)
    model = load_or_exit(paths, when, quiet=True, namespace=namespace)
    sb = model.sandbox(name)
    if sb is None:
        hint = did_you_mean(name, [s.name for s in model.sandboxes])
        click.echo(f"error: no sandbox {name!r} in {', '.join(paths)}" + (f"; {hint}" if hint else ""), err=True)
        sys.exit(1)
    data = describe(model, sb)
    text = render_json(data) if output == "json" else render_markdown(data, when) if output == "markdown" \
        else render_text(data, when)
    click.echo(text, nl=False)


@main.command(short_help="Run sandboxes as environments on a Kubernetes cluster.")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The cluster to reconcile (default: $KUBECONFIG, ~/.kube/config, or in-cluster credentials).")
@click.option("--context", default=None, help="The kubeconfig context (default: its current one).")
@click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS",
              help="Watch only this namespace (repeatable; default: every namespace).")
@click.option("--backend", type=click.Choice(["istio", "gateway-api"]), default=None,
              help="The routing objects to apply (default: istio; none with --xds-address, which serves routes).")
@click.option("--xds-address", default=None, help="HOST:PORT: serve xDS to sidecars from the cluster's state "
              "(EndpointSlices as EDS) instead of applying routing objects.")
@click.option("--admin-address", default=None, help="HOST:PORT for the dashboard and /metrics (with --xds-address).")
@click.option("--leader-elect", is_flag=True, help="Several replicas: only the holder of a coordination.k8s.io "
              "Lease writes; the others take over when it stops renewing.")
@click.option("--lease-namespace", default=None, help="Where the Lease lives (default: the pod's namespace).")
@click.option("--lease-name", default="meshforge-controller", show_default=True, help="The Lease's name.")
@click.option("--lease-duration", type=click.FloatRange(1, 600), default=15.0, show_default=True, metavar="SECONDS",
              help="How long a leader that stopped renewing keeps the lease.")
@click.option("--lease-renew", type=click.FloatRange(0.2, 300), default=5.0, show_default=True, metavar="SECONDS",
              help="How often the leader renews.")
@click.option("--identity", default=None, help="This replica's name in the Lease (default: host name + random).")
@click.option("--ready-timeout", type=click.FloatRange(1, 86400), default=300.0, show_default=True,
              metavar="SECONDS", help="After this long without a ready endpoint a fork's status says NotReadyInTime.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def controller(kubeconfig, context, namespaces, backend, xds_address, admin_address, leader_elect, lease_namespace,
               lease_name, lease_duration, lease_renew, identity, ready_timeout, log_level):
    """Reconcile Sandbox, RouteGroup and Baseline objects (deploy/crds/) on a cluster.

    Applies each fork's workload and Service and the routing objects (server-side apply, field manager
    meshforge), routes a key only once its forks have ready endpoints, reports status (kubectl wait
    --for=condition=Ready sandbox/NAME) and removes everything a sandbox made when it expires or is deleted.
    Example: meshforge controller --kubeconfig ~/.kube/config --backend istio
    """
    import asyncio

    from .controller.main import ControllerSettings, run
    from .controller.reconcile import Options
    from .names import parse_address
    from .server.control import configure_logging

    configure_logging(log_level)
    for a in filter(None, (xds_address, admin_address)):
        try:
            parse_address(a)
        except ValueError as e:
            raise click.BadParameter(str(e))
    if admin_address and not xds_address:
        raise click.UsageError("--admin-address serves the xDS side's dashboard: it needs --xds-address")
    if backend and xds_address:
        raise click.UsageError("--xds-address serves the routes itself: leave --backend out")
    if lease_renew >= lease_duration:
        raise click.UsageError("--lease-renew must be shorter than --lease-duration")
    options = Options(backend=None if xds_address else (backend or "istio"), namespaces=tuple(namespaces),
                      ready_timeout=ready_timeout)
    settings = ControllerSettings(kubeconfig, context, options, xds_address, admin_address, leader_elect, lease_namespace,
                        lease_name, lease_duration, lease_renew, identity)
    sys.exit(asyncio.run(run(settings)))


@main.command(short_help="Run it all live on this machine.")
@click.option("--keep", is_flag=True, help="Stay up afterwards, with the dashboard and preview URLs live, until "
              "Ctrl-C.")
def demo(keep):
    """Run it all live: a server, three services behind real Envoys, sandboxes.

    Exit 0 when the story ran to its end; 130 when Ctrl-C stopped it (with --keep: the way to end it).

    Example: meshforge demo --keep
    """
    from .demo import run_demo

    sys.exit(run_demo(keep))


if __name__ == "__main__":  # pragma: no cover
    main()
