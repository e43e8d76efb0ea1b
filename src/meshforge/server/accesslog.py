"""Access logs from the proxies: what each request carried and which version it reached, in bounded memory.

Input: Envoy's gRPC access log streams (`envoy.service.accesslog.v3.AccessLogService`, on the xDS
address and under the same TLS). Output: `RequestLog`, recent requests as plain dicts: the node (the
service whose proxy saw the request), request id, trace id (from `traceparent`), the routing key seen
(after the proxy lifted it out of `baggage`), the service and version reached, status and duration.
Memory is bounded: at most `per_key` requests per routing key, `MAX_KEYS` keys (the least recently
seen goes first), and `total` requests overall. Every field is length-limited; keys that are not valid
routing keys are recorded as none.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from ..xdsapi import PASSTHROUGH_CLUSTER, parse_cluster, valid_routing_key
from .ads import StreamError

log = logging.getLogger("meshforge.accesslog")

TRACEPARENT = "traceparent"
MAX_FIELD = 200  # characters kept of any logged string
MAX_KEYS = 1000


def _short(text: str) -> str:
    return text[:MAX_FIELD]


def _trace_hex(text: str | None) -> str | None:
    """A W3C trace id (32 hex digits, not all zero) in lower case, else None."""
    if not text or len(text) != 32 or text == "0" * 32:
        return None
    try:
        int(text, 16)
    except ValueError:
        return None
    return text.lower()


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), None when malformed or zero."""
    parts = traceparent.strip().split("-") if traceparent else []
    return _trace_hex(parts[1]) if len(parts) >= 4 else None


# One logged request, as stored: a tuple of scalars (cheap to build, and not tracked by the garbage
# collector), turned into a dict only when asked for. AUTHENTICATED: the stream that sent it proved, with a
# client certificate, that it is the proxy of NODE (mutual TLS); without it anyone could have sent it.
TIME, NODE, REQUEST_ID, TRACE, KEY, CLUSTER, AUTHORITY, PATH, STATUS, DURATION, AUTHENTICATED, METHOD = range(12)
_METHODS = {v: k for k, v in base_pb2.RequestMethod.items() if k != "METHOD_UNSPECIFIED"}


def as_dict(row: tuple) -> dict:
    parsed = parse_cluster(row[CLUSTER]) if row[CLUSTER] else None
    return {
        "time": row[TIME], "node": row[NODE], "requestId": row[REQUEST_ID] or None,
        "traceId": _trace_hex(row[TRACE]),
        "key": row[KEY],
        "cluster": row[CLUSTER] or None,
        "service": ".".join(parsed[2].split(".")[:2]) if parsed else None,  # name.namespace of the FQDN
        "version": (parsed[1] or "baseline") if parsed else None,
        "authority": row[AUTHORITY], "path": row[PATH], "status": row[STATUS], "durationMs": row[DURATION],
        "authenticated": bool(row[AUTHENTICATED]) if len(row) > AUTHENTICATED else False,
        "method": row[METHOD] if len(row) > METHOD else None,
    }


class RequestLog:
    """Recent requests in bounded memory. Written by the access-log streams and read by the admin server, both
    on serve's event loop (no lock).

    Rows live in three pools, each a queue in arrival order with a bound of its own: rows whose key an
    active sandbox or route group has (`known`, told by the server after each reload), rows without a key
    (the other hops of traces), and rows of keys nobody has (typos, expired sandboxes, or a flood of
    made-up keys, which then churns only its own pool). The pools' bounds add up to `total`: that many rows
    at most, however they arrive. Per key, the newest `per_key` rows are indexed (at most `max_keys` known
    keys and a tenth as many unknown ones, the least recently seen dropped first); the index holds rows of
    the pools only, so it adds no rows."""

    POOLS = ("known", "keyless", "unknown")

    def __init__(self, per_key: int = 200, total: int = 20_000, max_keys: int = MAX_KEYS,
                 known: Callable[[str], bool] | None = None):
        self.per_key, self.total, self.max_keys = per_key, total, max_keys
        self.max_unknown_keys = max(1, max_keys // 10)
        self.limits = {"known": total // 2, "keyless": total * 2 // 5}
        self.limits["unknown"] = total - self.limits["known"] - self.limits["keyless"]
        self.known: Callable[[str], bool] = known or (lambda key: False)
        self._pools: dict[str, collections.deque[tuple]] = {p: collections.deque() for p in self.POOLS}
        self._by_key: dict[str, collections.OrderedDict[str, collections.deque[tuple]]] = {
            "known": collections.OrderedDict(), "unknown": collections.OrderedDict()}
        self.received = 0

    def add(self, row: tuple) -> None:
        key = row[KEY]
        kind = "keyless" if not key else "known" if self.known(key) else "unknown"
        self.received += 1
        pool = self._pools[kind]
        pool.append(row)
        if len(pool) > self.limits[kind]:
            self._unindex(pool.popleft())
        if key:
            index = self._by_key[kind]
            q = index.get(key)
            if q is None:
                other = self._by_key["unknown" if kind == "known" else "known"].pop(key, None)
                q = index[key] = collections.deque(other or (), maxlen=self.per_key)
                if len(index) > (self.max_keys if kind == "known" else self.max_unknown_keys):
                    index.popitem(last=False)
            else:
                index.move_to_end(key)
            q.append(row)

    def _unindex(self, row: tuple) -> None:
        """A row left its pool: it leaves its key's index too (the oldest there, nearly always)."""
        key = row[KEY]
        for index in self._by_key.values():
            q = index.get(key) if key else None
            if q:
                if q[0] is row:
                    q.popleft()
                else:
                    for i, r in enumerate(q):
                        if r is row:
                            del q[i]
                            break
                if not q:
                    del index[key]

    def rows(self) -> int:
        return sum(len(p) for p in self._pools.values())

    def keys(self) -> dict[str, int]:
        return {k: len(v) for index in self._by_key.values() for k, v in index.items()}

    def _all(self):
        for p in self._pools.values():
            yield from p

    def for_key(self, key: str) -> list[dict]:
        """The requests that carried `key`, and every other request of their traces (the hops where the
        key may have been lost), oldest first."""
        own = list(self._by_key["known"].get(key) or self._by_key["unknown"].get(key) or ())
        if not own:
            return []
        traces = {r[TRACE] for r in own if r[TRACE]}
        related = [r for r in self._all() if r[TRACE] in traces and r[KEY] != key] if traces else []
        # without trace context, what the services the key reached sent next (the doctor's heuristic)
        reached = {d["service"] for d in map(as_dict, own) if d["service"]}
        since = min(r[TIME] for r in own)
        loose = [r for r in self._all() if not r[TRACE] and r[NODE] in reached and r[TIME] >= since and
                 r[KEY] != key]
        rows = sorted(set(own + related + loose), key=lambda r: (r[TIME], r[REQUEST_ID]))
        return [as_dict(r) for r in rows]

    def recent(self, limit: int = 100) -> list[dict]:
        rows = sorted(self._all(), key=lambda r: r[TIME])[-limit:]
        return [as_dict(r) for r in rows]


_valid_keys: dict[str, bool] = {}  # routing-key validity, memoised (keys repeat; bounded below)


def _key(value: str | None) -> str | None:
    if not value:
        return None
    ok = _valid_keys.get(value)
    if ok is None:
        ok = valid_routing_key(value)
        if len(_valid_keys) < 10_000:
            _valid_keys[value] = ok
    return value if ok else None


def _row(node: str, e, authenticated: bool = False) -> tuple:
    common, req = e.common_properties, e.request
    headers = req.request_headers
    tp = headers.get(TRACEPARENT)
    # the listeners log two request headers: traceparent, and the routing-key header (whatever its name)
    key = None
    if len(headers) > (tp is not None):
        key = next((v for k, v in headers.items() if k != TRACEPARENT), None)
    start, duration = common.start_time, common.duration
    return (start.seconds + start.nanos / 1e9 or time.time(), node, req.request_id[:MAX_FIELD],
            tp[3:35].lower() if tp and len(tp) >= 35 else None, _key(key), common.upstream_cluster[:MAX_FIELD],
            req.authority[:MAX_FIELD], req.path[:MAX_FIELD], e.response.response_code.value or None,
            round(duration.seconds * 1000 + duration.nanos / 1e6, 3), authenticated, _METHODS.get(req.request_method))


class AccessLogServer(als_pb2_grpc.AccessLogServiceServicer):
    """Receives the proxies' access logs into a `RequestLog`. Under mutual TLS the identifier's node must
    be the one its certificate names (the same rule as ADS), so no proxy can log for another, and its rows
    are marked authenticated. A row whose upstream cluster is not one of that node's clusters (`scope`: a
    proxy claiming a call it could not have made) is dropped, and counted. A malformed entry costs one log
    line a minute, never a traceback."""

    WARN_EVERY = 60.0  # seconds between two warnings about malformed entries

    def __init__(self, store: RequestLog, authorize=None, scope: Callable[[str], object] | None = None, counter=None):
        self.store = store
        self._counter = counter  # a labelled Prometheus counter of dropped entries, by reason
        self._authorize = authorize
        self._scope = scope  # node -> a container of the clusters it holds (None: no configuration for it)
        self.dropped = collections.Counter()  # reason -> entries dropped
        self._warned = 0.0

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        if self._counter is not None:
            self._counter.labels(reason).inc()
        now = time.monotonic()
        if now - self._warned >= self.WARN_EVERY:
            self._warned = now
            log.warning("access log entries dropped (%s so far, %s): %s",
                        sum(self.dropped.values()), ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())),
                        detail[:200])

    async def StreamAccessLogs(self, request_iterator, context):
        node = None
        authenticated = self._authorize is not None
        try:
            async for msg in request_iterator:
                if node is None:
                    if not msg.HasField("identifier"):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message needs an identifier")
                    ident = msg.identifier.node
                    if self._authorize is not None:
                        self._authorize(_Peer(context), ident)
                    node = _short(ident.cluster or ident.id)
                clusters = self._scope(node) if self._scope is not None else None
                for e in msg.http_logs.log_entry:
                    try:
                        row = _row(node, e, authenticated)
                    except Exception as err:  # noqa: BLE001 - a malformed entry from a client: counted, not fatal
                        self._drop("malformed", f"{type(err).__name__}: {err}")
                        continue
                    if row[CLUSTER] == PASSTHROUGH_CLUSTER:
                        continue  # a transparent sidecar's call outside the mesh: no hop of it
                    if row[CLUSTER] and (parse_cluster(row[CLUSTER]) is None or
                                         (clusters is not None and row[CLUSTER] not in clusters)):
                        self._drop("not the node's cluster", f"node {node!r} logged cluster {row[CLUSTER]!r}")
                        continue
                    self.store.add(row)
        except StreamError as e:
            await context.abort(e.code, e.message)
        except (grpc.RpcError, grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as err:  # noqa: BLE001 - the stream is garbage: end it with one line, not a traceback
            self._drop("malformed", f"{type(err).__name__}: {err}")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed access log message")
        return als_pb2.StreamAccessLogsResponse()


class _Peer:
    """What `tls.authorize` reads of a stream: its gRPC context."""

    def __init__(self, context) -> None:
        self.context = context
