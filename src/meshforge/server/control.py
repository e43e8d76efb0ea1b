"""`meshforge serve`'s control plane: the gRPC ADS server, the admin HTTP server, the file watcher and the expiry clock.

Input: a `Compiler` (the serve session, `meshforge.session`: the server imports no compiler stage; it
compiles, and says which paths are inputs) and addresses. Output: a running control plane. Every valid change is published to the cache, whose
streams push only what changed for their node; an invalid change is reported (log, /readyz, metrics)
and the last good configuration keeps serving. `expiresAt` takes effect on time, without a file change.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import operator
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

import grpc
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from ..xdsapi import Snapshot, join_address, parse_address
from . import trace, watch
from .accesslog import AccessLogServer, RequestLog
from .admin import AdminServer, AdminState
from .ads import AdsServer, Limits
from .cache import SnapshotCache
from .metrics import Metrics
from .tls import ServerTls, authorize

log = logging.getLogger("meshforge.serve")

MAX_STREAMS = 16  # concurrent gRPC streams per client connection
# Every connection is closed after this long (GOAWAY, then closed after the grace): proxies reconnect at once
# (istiod does the same, to rebalance), and what a client that never reads left in the transport is freed.
MAX_CONNECTION_AGE_MS = 30 * 60 * 1000
MAX_CONNECTION_AGE_GRACE_MS = 60 * 1000

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


class SafeFormatter(logging.Formatter):
    """One event, one line: control characters in messages (a proxy's NACK text, a node id, a path)
    are escaped, so no input can forge a log line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


def _log_lines(level: int, text: str) -> None:
    """A multi-line diagnostic (`file:line:col: ...`, `  at ...`, `  hint: ...`) as one log line per line, as it
    reads on a terminal; each line is still escaped by `SafeFormatter`."""
    for line in text.splitlines() or [""]:
        log.log(level, "%s", line)


def check_free(host: str, port: int) -> None:
    """OSError (with the reason) when another process listens on HOST:PORT. gRPC's own bind would share a
    port another server holds (it sets SO_REUSEPORT by default, and serve turns that off) or print its own
    errors; asked first, a taken port is one clear message."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot resolve {host!r}: {e.strerror}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server bind
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise OSError(f"{join_address(host, port)} is already in use by another process (another "
                                  "meshforge serve?); stop it or choose another port") from None
                raise OSError(f"cannot listen on {join_address(host, port)}: {e.strerror or e}") from None


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class Workers:
    """`serve --workers N`: N-1 more serve processes on the same xDS port (SO_REUSEPORT: the kernel spreads new
    connections over them; a proxy's stream stays with the process that took its connection). Each reads, compiles
    and watches the same specs itself, so every process serves the same versions (content hashes). They take no
    admin address and no access logs (the request log lives in one process). Started once the parent listens,
    started again when one exits, stopped with the parent; each also ends when the parent dies (PR_SET_PDEATHSIG)."""

    def __init__(self, count: int, argv: list[str]):
        self.count, self.argv = count, argv  # argv: a worker's command line, with "{address}" for the xDS address
        self.address = ""
        self.slots: list[_Slot] = []
        self.stopping = False

    @property
    def procs(self) -> list:
        return [slot.proc for slot in self.slots]

    def start(self, address: str) -> None:
        self.address = address
        now = time.monotonic()
        self.slots = [_Slot(self._spawn(), now) for _ in range(1, self.count)]
        log.info("started %d worker process(es) on %s: %s", self.count - 1, address,
                 ", ".join(str(p.pid) for p in self.procs))

    def _spawn(self):
        import subprocess

        return subprocess.Popen([a.replace("{address}", self.address) for a in self.argv], preexec_fn=_die_with_parent)

    async def keep(self) -> None:
        """Start again a worker that exited (its proxies reconnect, to whichever process the kernel picks): at once
        when it had run a while, later and later (`restart_delay`) when it keeps exiting soon after its start."""
        while True:
            await asyncio.sleep(0.5)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """One look at the workers at time `now`: note the ones that exited, start those whose time has come."""
        if self.stopping:
            return
        for slot in self.slots:
            p = slot.proc
            if slot.due is None and p.poll() is not None:
                slot.quick_exits = slot.quick_exits + 1 if now - slot.started < QUICK_EXIT else 0
                delay = restart_delay(slot.quick_exits)
                log.warning("worker process %d exited (%s); starting it again%s", p.pid, p.returncode,
                            f" in {delay:.0f} s (it exited {slot.quick_exits} times in a row within "
                            f"{QUICK_EXIT:.0f} s of its start)" if delay else "")
                slot.due = now + delay
            if slot.due is not None and now >= slot.due:
                slot.proc, slot.started, slot.due = self._spawn(), now, None

    def stop(self) -> None:
        self.stopping = True
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: it did not stop in time
                p.kill()
                p.wait()


@dataclass
class _Slot:
    """One worker process of `Workers` and its restarts."""

    proc: object  # subprocess.Popen (or anything with pid, poll() and returncode)
    started: float  # when it was started (monotonic)
    quick_exits: int = 0  # exits in a row within QUICK_EXIT seconds of a start
    due: float | None = None  # it exited: when it is started again


QUICK_EXIT = 10.0  # seconds: a worker that exits sooner after its start counts towards the back-off


def restart_delay(quick_exits: int) -> float:
    """Seconds before a worker that exited is started again: none after one that ran a while (or the first quick
    exit: one crash may be a kill), then 1, 2, 4 ... up to 60 s for one that keeps exiting soon after its start
    (a broken install, a port it cannot bind), so the log is not flooded once a second."""
    return 0.0 if quick_exits <= 1 else min(60.0, 2.0 ** (quick_exits - 2))


def _die_with_parent() -> None:
    """In a worker, before it runs: end with SIGTERM when the parent serve dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


@dataclass
class Result:
    snapshot: Snapshot | None  # None when the specs are invalid
    errors: list[str] = field(default_factory=list)  # rendered diagnostics, one per problem
    warnings: list[str] = field(default_factory=list)
    next_expiry: datetime | None = None  # when a sandbox expires next: recompile then
    # the dashboard's data (sandboxes, keys, forks, the service graph) as plain JSON, built when asked
    # for: at 10,000 services building it costs more than the reload itself
    overview: Callable[[], dict] | None = None
    is_known: Callable[[str], bool] | None = None  # whether an active sandbox or route group has a routing key


class Compiler(Protocol):
    """What the server needs of the compiler (`session.Session`)."""

    paths: list[str]

    def compile(self, now: datetime, changed: frozenset[str] | None) -> Result: ...

    def inputs(self) -> watch.WatchedInputs: ...

    def verify(self) -> list[str]: ...


INLINE_FILES = 8  # a change of at most this many files ...
INLINE_BYTES = 16 * 1024  # ... each at most this large ...
INLINE_SECONDS = 0.005  # ... when the last compile took at most this long, compiles on the loop


class ControlPlane:
    def __init__(self, compiler: Compiler, xds_address: str, admin_address: str | None = None, step_ms: int = 10, tls: ServerTls | None = None,
                 access_log_rate: int | None = 0, admin_hosts: Iterable[str] = (), operators: Iterable[str] = (),
                 limits: Limits = Limits(), verify: bool = False, workers: "Workers | None" = None,
                 worker: bool = False):
        self.compiler = compiler
        self.workers = workers  # processes of its own that serve the same port (serve --workers N), or None
        self.worker = worker  # this process is such a worker: the port is its parent's (shared, SO_REUSEPORT)
        self.paths = list(compiler.paths)
        self.verify = verify  # after every reload, rebuild from scratch and log any difference (debugging)
        self.xds_address = xds_address
        self.admin_address = admin_address
        self.step_ms = step_ms
        self.cache = SnapshotCache()
        self.metrics = Metrics()
        self.state = AdminState()
        self.state.cache, self.state.metrics = self.cache, self.metrics
        self.tls = tls
        mutual = tls is not None and tls.client_ca_file is not None
        self.ads = AdsServer(self.cache, self.metrics, authorize if mutual else None, limits)
        self.state.rejections = self.ads.rejections
        self.requests = RequestLog()
        self.access_log = AccessLogServer(self.requests, authorize if mutual else None, self.cache.clusters_of,
                                          self.metrics.access_log_dropped)
        self.state.requests = self.requests
        self.state.access_log_rate = access_log_rate
        self.state.hosts = frozenset(h.lower().rstrip(".") for h in admin_hosts)
        self.state.operators = frozenset(operators)
        self.state.proxies = self.ads.proxies
        self._expiry: asyncio.TimerHandle | None = None
        self._pending: str | None = None  # a reload asked for while one runs: run once more after it
        self._changed: set[str] | None = set()  # the files changed since the last reload began (None: unknown)
        self._reloader: asyncio.Future | None = None
        self._last_compile = float("inf")  # seconds the last compile took (the first goes to the thread)
        self.server: grpc.aio.Server | None = None
        self.admin = None
        self.bound_port = 0
        self.watcher: watch.Watcher | None = None  # inotify (Linux): knows which spec files are being written

    def request_reload(self, reason: str, changed: Iterable[str] | None = None) -> None:
        """Reload soon, without waiting: requests that arrive while a reload runs fold into one more.
        `changed`: the only spec files that changed (the compiler may then look at those alone); None:
        anything may have changed."""
        if changed is None:
            self._changed = None
        elif self._changed is not None:
            self._changed.update(changed)
        self._pending = reason
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.ensure_future(self._reload_pending())

    async def _reload_pending(self) -> None:
        while self._pending is not None:
            reason, self._pending = self._pending, None
            changed, self._changed = self._changed, set()
            await self.reload(reason, None if changed is None else frozenset(changed))

    def _inline(self, changed: frozenset[str] | None) -> bool:
        """Whether to compile on the loop itself: a change of a few small files when the last compile was quick
        (a sandbox file: well under a millisecond, where the hop to a worker thread and back, contending for the
        interpreter with the gRPC threads, costs more than the compile). Anything else goes to the thread."""
        if changed is None or not 0 < len(changed) <= INLINE_FILES or self.verify or \
                self._last_compile > INLINE_SECONDS:
            return False
        for path in changed:
            try:
                if os.stat(path).st_size > INLINE_BYTES:
                    return False
            except OSError:
                continue  # gone: reading it costs nothing
        return True

    async def reload(self, reason: str, changed: frozenset[str] | None = None) -> bool:
        """Compile in a worker thread (a slow spec never delays answers to proxies), or on the loop for a small
        change that compiles in about a millisecond (`_inline`); publish on the loop."""
        t0 = time.perf_counter()
        trace.mark("reload", reason=reason)
        watcher = self.watcher
        writes = watcher.modifications if watcher is not None else 0
        try:
            if self._inline(changed):
                result = self._compile(datetime.now(timezone.utc), changed)
                if watcher is not None:
                    watcher.catch_up()  # events that arrived while the loop compiled: a write under way defers
            else:
                result = await asyncio.to_thread(self._compile, datetime.now(timezone.utc), changed)
            self._last_compile = time.perf_counter() - t0
        except Exception:  # a bug must not take the control plane down: keep serving
            log.exception("reload (%s) failed unexpectedly; keeping the last good configuration", reason)
            self.metrics.reloads.labels("crash").inc()
            return False
        elapsed = time.perf_counter() - t0
        self.metrics.compile_seconds.observe(elapsed)
        if trace.on():
            trace.mark("compiled", **getattr(self.compiler, "stages", {}))
        if watcher is not None and watcher is self.watcher and (watcher.modifications != writes or watcher.writing):
            # a spec file was written while it was read: what was read may be half of it. Publish nothing;
            # the write's close reloads again.
            log.info("reload (%s): a spec file was being written while it was read; waiting for it to be closed",
                     reason)
            self.metrics.reloads.labels("deferred").inc()
            return False
        for w in result.warnings:
            _log_lines(logging.WARNING, w)
        if result.snapshot is None:
            for e in result.errors:
                _log_lines(logging.ERROR, e)
            n = len(result.errors)
            log.error("reload (%s): specs invalid (%d error%s); still serving the last good configuration",
                      reason, n, "" if n == 1 else "s")
            self.state.errors = list(result.errors)
            self.metrics.spec_errors.set(len(result.errors))
            self.metrics.spec_valid.set(0)
            self.metrics.reloads.labels("invalid").inc()
        elif self._unchanged(result.snapshot):
            log.debug("reload (%s): nothing changed", reason)
            self.state.has_config, self.state.errors = True, []
            self.state.overview = result.overview
            self.metrics.spec_errors.set(0)
            self.metrics.spec_valid.set(1)
            self.metrics.reloads.labels("unchanged").inc()
        else:
            self.cache.publish(result.snapshot)
            trace.mark("published", generation=self.cache.generation)
            self.state.overview = result.overview
            gc.freeze()  # snapshots are long-lived: keep full collections from scanning them (tail latency)
            self.state.has_config, self.state.errors = True, []
            self.metrics.spec_errors.set(0)
            self.metrics.spec_valid.set(1)
            self.metrics.generation.set(self.cache.generation)
            self.metrics.reloads.labels("ok").inc()
            log.info("reload (%s): published snapshot %d for %d nodes in %.1f ms", reason, self.cache.generation,
                     len(result.snapshot.nodes), elapsed * 1000)
        if result.snapshot is not None and result.is_known is not None:
            self.requests.known = result.is_known  # the request log keeps the rows of active keys apart
        self._schedule_expiry(result.next_expiry)
        return result.snapshot is not None

    def _compile(self, now: datetime, changed: frozenset[str] | None) -> Result:
        result = self.compiler.compile(now, changed)
        if self.verify:
            problems = self.compiler.verify()
            for p in problems:
                log.error("--verify: the incremental compile differs from a fresh one: %s", p)
            if problems:
                self.metrics.reloads.labels("unverified").inc()
        return result

    def _unchanged(self, snapshot: Snapshot) -> bool:
        """Same nodes, each with the very same config object: the compiler reused everything
        (the identity rule of `xdsapi.Snapshot`)."""
        old = self.cache.snapshot
        if old is None or old.settings != snapshot.settings:
            return False
        a, b = old.nodes, snapshot.nodes
        # compared in C (10,000 nodes: ~0.1 ms); nodes in another order count as a change, which is harmless
        return a.keys() == b.keys() and all(map(operator.is_, a.values(), b.values()))

    def _schedule_expiry(self, when: datetime | None) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if when is None:
            return
        delay = max(0.0, (when - datetime.now(timezone.utc)).total_seconds()) + 0.001
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(delay, self.request_reload, "a sandbox expired", ())

    def _identity(self) -> dict[str, tuple | None]:
        """The identity of each path named: when one changes (a git-sync style swap of `specs -> rev2`, a
        directory deleted and re-created) the watch is set up again."""
        ident = {}
        for p in self.paths:
            try:
                st = os.stat(p)
                ident[p] = (os.path.realpath(p), st.st_dev, st.st_ino)
            except OSError:
                ident[p] = None
        return ident

    async def _watch(self) -> None:
        """Watch the inputs. Every second check that the watched paths are still the ones the inputs name;
        when not (a git-sync style swap of `specs -> rev2`, a directory deleted and re-created), watch again.
        Each new watch reloads once, for changes made between the last compile and the watch being set up.
        Elsewhere than Linux (no inotify) the inputs are compiled again every second: the workspace reads
        only the files whose size, time or inode changed."""
        loop = asyncio.get_running_loop()
        last = None
        try:
            while True:
                ident = self._identity()
                if ident != last:
                    self._set_vanished([p for p, i in ident.items() if i is None])
                    if self.watcher is not None:
                        self.watcher.close()
                        self.watcher = None
                    inputs = self.compiler.inputs()
                    if inputs.roots and watch.AVAILABLE:
                        self.watcher = watch.Watcher(inputs, self.request_reload)
                        self.watcher.start(loop)
                    self.request_reload("watch started" if last is None else "the watched paths changed")
                    last = ident
                elif not watch.AVAILABLE:
                    self.request_reload("poll", None)
                await asyncio.sleep(1.0)
        finally:
            if self.watcher is not None:
                self.watcher.close()
                self.watcher = None

    def _set_vanished(self, paths: list[str]) -> None:
        self.state.vanished = list(paths)
        if paths:
            log.warning("watched path(s) missing: %s; serving the last good configuration until they return",
                        ", ".join(paths))

    async def start(self) -> None:
        host, port = parse_address(self.xds_address)
        if port and not self.worker:
            check_free(host, port)
        if self.admin_address:
            check_free(*parse_address(self.admin_address))
        await self.reload("start")
        # SO_REUSEPORT only among serve's own processes (--workers): check_free (which sets no SO_REUSEPORT) still
        # finds the port taken, so a second serve on it fails rather than splitting the proxies between two servers.
        # A proxy opens two streams on its connection (ADS, access logs): a few more are allowed, not thousands
        reuse = 1 if self.workers is not None or self.worker else 0
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", reuse), ("grpc.max_concurrent_streams", MAX_STREAMS),
                                               ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
                                               ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
                                               ("grpc.keepalive_time_ms", 30_000),
                                               ("grpc.keepalive_permit_without_calls", 1)])
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self.server)
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(self.access_log, self.server)
        if self.tls is not None:
            self.bound_port = self.server.add_secure_port(join_address(host, port), self.tls.grpc_credentials())
        else:
            self.bound_port = self.server.add_insecure_port(join_address(host, port))
        if self.bound_port == 0:
            raise OSError(f"cannot listen on {self.xds_address}")
        await self.server.start()
        if self.workers is not None:
            self.workers.start(join_address(host, self.bound_port))
        mode = "plaintext" if self.tls is None else "mutual TLS" if self.tls.client_ca_file else "TLS"
        log.info("serving xDS (ADS: state of the world and delta) on %s, %s", join_address(host, self.bound_port), mode)
        if self.admin_address:
            ah, ap = parse_address(self.admin_address)
            self.admin = AdminServer(self.state, self.tls.ssl_context() if self.tls else None)
            bound = await self.admin.start(ah, ap)
            log.info("admin on http%s://%s (dashboard /, /api/state, /healthz /readyz /metrics /debug/config?node=...)",
                     "s" if self.tls else "", join_address(ah, bound))
        else:
            log.info("no --admin-address: no dashboard, /readyz, /metrics or access-log queries (doctor); "
                     "add --admin-address 127.0.0.1:18080 for them")

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        if self.server is not None:
            await self.server.stop(grace=0.5)
        if self.admin is not None:
            self.admin.close()

    async def run_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        watcher = asyncio.ensure_future(self._watch())
        keeper = asyncio.ensure_future(self.workers.keep()) if self.workers is not None else None
        await stop.wait()
        log.info("shutting down")
        watcher.cancel()
        if keeper is not None:
            keeper.cancel()
        await self.stop()
