"""`meshforge serve` as a process: its options checked, its worker processes' command line, the control plane run.

Input: `ServeOptions` (what the command line says, already parsed by click). Output: an exit code. Problems
with the options are `OptionError`s (the CLI shows them as usage errors, naming the option); a serve that
cannot listen ends with 2 and the reason. The CLI is glue only: it builds the options and calls `run`.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from dataclasses import dataclass

from .model import DEFAULT_NAMESPACE
from .names import parse_address
from .server.ads import Limits

YOUNG_GC_THRESHOLD = 10_000  # allocations between collections of the youngest generation, in serve (run)


class OptionError(ValueError):
    """An option serve cannot run with; `option` names it when one option is at fault (None: a combination)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ServeOptions:
    paths: tuple[str, ...]
    xds_address: str
    admin_address: str | None = None
    log_level: str = "info"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    client_ca_file: str | None = None
    access_logs: bool = True
    access_log_rate: int = 100
    admin_hosts: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    max_streams_per_peer: int = Limits.streams_per_peer
    stall_timeout: float = Limits.stall_seconds
    max_pending_bytes: int = Limits.pending_bytes
    verify: bool = False
    workers: int = 1
    worker: bool = False  # one of --workers' processes (started by the parent serve)
    namespace: str = DEFAULT_NAMESPACE


def check(o: ServeOptions):
    """The options' problems before anything listens, the first one raised as an `OptionError`; returns the
    server's TLS settings (None: plaintext), whose certificate and key were loaded once to prove they can be."""
    from .server.tls import ServerTls

    if bool(o.tls_cert_file) != bool(o.tls_key_file):
        raise OptionError("--tls-cert-file and --tls-key-file go together")
    if o.client_ca_file and not o.tls_cert_file:
        raise OptionError("--client-ca-file needs --tls-cert-file and --tls-key-file")
    if o.operators and not o.client_ca_file:
        raise OptionError("--admin-operator names client certificates: it needs --client-ca-file (mutual TLS)")
    tls = ServerTls(o.tls_cert_file, o.tls_key_file, o.client_ca_file) if o.tls_cert_file else None
    if tls is not None:
        try:
            tls.ssl_context()  # fail now, with the reason, rather than on the first connection
        except (OSError, ValueError) as e:
            raise OptionError(f"cannot use the certificate or key: {e}", "--tls-cert-file")
    for option, a in (("--xds-address", o.xds_address), ("--admin-address", o.admin_address)):
        if a:
            try:
                parse_address(a)
            except ValueError as e:
                raise OptionError(str(e), option)
    if o.workers > 1 and o.access_logs:
        raise OptionError("--workers N needs --no-access-logs: the request log (doctor, the dashboard) is kept in "
                          "one process, and the proxies' access logs would reach any of them")
    if o.worker and o.admin_address:
        raise OptionError("--worker takes no --admin-address")
    return tls


def worker_argv(o: ServeOptions) -> list[str]:
    """A worker process's command line: the same specs, limits and TLS, no admin and no access logs, with
    "{address}" where the xDS address the parent listens on goes."""
    argv = [sys.executable, "-m", "meshforge.cli", "serve", "--xds-address", "{address}", "--worker",
            "--no-access-logs", "--log-level", o.log_level, "--namespace", o.namespace,
            "--max-streams-per-peer", str(o.max_streams_per_peer), "--stall-timeout", str(o.stall_timeout),
            "--max-pending-bytes", str(o.max_pending_bytes)]
    for flag, value in (("--tls-cert-file", o.tls_cert_file), ("--tls-key-file", o.tls_key_file),
                        ("--client-ca-file", o.client_ca_file)):
        if value:
            argv += [flag, value]
    return argv + ["--", *o.paths]


def run(o: ServeOptions) -> int:
    """Serve until interrupted (0), or 2 when the addresses cannot be listened on. Raises `OptionError` first."""
    from .emit.xds.resources import AccessLogs
    from .server.control import ControlPlane, Workers, configure_logging
    from .session import Session

    configure_logging(o.log_level)
    tls = check(o)
    # The young generation collected every 10,000 allocations of container objects instead of 700: an update
    # reaching thousands of streams allocates futures, tasks and messages by the hundred thousand, nearly all
    # freed by reference counting; collecting them 14 times as often cost a tenth of the server's CPU
    # (bench_fanout at 2,000 streams: 301-318 -> 270-274 us per stream-update). Memory: at most 10,000 young
    # objects wait for a collection. Snapshots are frozen out of collections on publish (control).
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    pool = Workers(o.workers, worker_argv(o)) if o.workers > 1 else None
    logs = AccessLogs(o.access_log_rate) if o.access_logs else None
    cp = ControlPlane(Session(list(o.paths), logs, o.namespace), o.xds_address, o.admin_address, tls=tls,
                      access_log_rate=o.access_log_rate if o.access_logs else None, admin_hosts=o.admin_hosts,
                      operators=o.operators,
                      limits=Limits(o.max_streams_per_peer, o.stall_timeout, o.max_pending_bytes),
                      verify=o.verify, workers=pool, worker=o.worker)
    try:
        asyncio.run(cp.run_forever())
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as e:  # cannot listen: the address is taken or not ours
        print(f"Error: cannot serve: {e}", file=sys.stderr)
        return 2
    return 0
