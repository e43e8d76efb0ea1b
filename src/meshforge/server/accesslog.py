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

import collections
import logging
import threading
import time

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from ..xdsapi import parse_cluster, valid_routing_key
from .ads import StreamError

log = logging.getLogger("meshforge.accesslog")

TRACEPARENT = "traceparent"
MAX_FIELD = 200  # characters kept of any logged string
MAX_KEYS = 1000


def _short(text: str) -> str:
    return text[:MAX_FIELD]


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), None when malformed or zero."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


class RequestLog:
    """Recent requests, bounded per routing key and in total. Thread-safe (admin reads from its thread)."""

    def __init__(self, per_key: int = 200, total: int = 20_000, max_keys: int = MAX_KEYS):
        self.per_key, self.total, self.max_keys = per_key, total, max_keys
        self._lock = threading.Lock()
        self._all: collections.deque[dict] = collections.deque(maxlen=total)
        self._by_key: collections.OrderedDict[str, collections.deque[dict]] = collections.OrderedDict()
        self.received = 0

    def add(self, entry: dict) -> None:
        with self._lock:
            self.received += 1
            self._all.append(entry)
            key = entry.get("key")
            if key:
                q = self._by_key.get(key)
                if q is None:
                    if len(self._by_key) >= self.max_keys:
                        self._by_key.popitem(last=False)
                    q = self._by_key[key] = collections.deque(maxlen=self.per_key)
                else:
                    self._by_key.move_to_end(key)
                q.append(entry)

    def keys(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._by_key.items()}

    def for_key(self, key: str) -> list[dict]:
        """The requests that carried `key`, and every other request of their traces (the hops where the
        key may have been lost), oldest first."""
        with self._lock:
            own = list(self._by_key.get(key, ()))
            traces = {e["traceId"] for e in own if e.get("traceId")}
            related = [e for e in self._all if e.get("traceId") in traces and e.get("key") != key] if traces else []
            if not own:
                return []
            # without trace context, what the services the key reached sent next (the doctor's heuristic)
            reached = {e["service"] for e in own if e.get("service")}
            since = min(e["time"] for e in own)
            loose = [e for e in self._all if not e.get("traceId") and e.get("node") in reached and
                     e["time"] >= since and e.get("key") != key]
        seen: set[int] = set()
        out = []
        for e in sorted(own + related + loose, key=lambda e: (e["time"], e.get("requestId") or "")):
            if id(e) not in seen:
                seen.add(id(e))
                out.append(e)
        return out

    def recent(self, limit: int = 100) -> list[dict]:
        with self._lock:
            return list(self._all)[-limit:]


def _entry(node: str, e) -> dict:
    common, req, resp = e.common_properties, e.request, e.response
    headers = req.request_headers
    # the listeners log two request headers: traceparent, and the routing-key header (whatever its name)
    key = next((v for k, v in sorted(headers.items()) if k != TRACEPARENT), None)
    parsed = parse_cluster(common.upstream_cluster)
    start = common.start_time.seconds + common.start_time.nanos / 1e9
    duration = common.duration.seconds * 1000 + common.duration.nanos / 1e6 if common.HasField("duration") else None
    return {
        "time": start or time.time(),
        "node": _short(node),
        "requestId": _short(req.request_id) or None,
        "traceId": trace_id(headers.get(TRACEPARENT)),
        "key": key if key and valid_routing_key(key) else None,
        "cluster": _short(common.upstream_cluster) or None,
        "service": ".".join(parsed[2].split(".")[:2]) if parsed else None,  # name.namespace of the FQDN
        "version": (parsed[1] or "baseline") if parsed else None,
        "authority": _short(req.authority),
        "path": _short(req.path),
        "status": resp.response_code.value if resp.HasField("response_code") else None,
        "durationMs": round(duration, 3) if duration is not None else None,
    }


class AccessLogServer(als_pb2_grpc.AccessLogServiceServicer):
    """Receives the proxies' access logs into a `RequestLog`. Under mutual TLS the identifier's node must
    be the one its certificate names (the same rule as ADS), so no proxy can log for another."""

    def __init__(self, store: RequestLog, authorize=None):
        self.store = store
        self._authorize = authorize

    async def StreamAccessLogs(self, request_iterator, context):
        node = None
        try:
            async for msg in request_iterator:
                if node is None:
                    if not msg.HasField("identifier"):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message needs an identifier")
                    ident = msg.identifier.node
                    if self._authorize is not None:
                        self._authorize(_Peer(context), ident)
                    node = ident.cluster or ident.id
                for e in msg.http_logs.log_entry:
                    self.store.add(_entry(node, e))
        except StreamError as e:
            await context.abort(e.code, e.message)
        return als_pb2.StreamAccessLogsResponse()


class _Peer:
    """What `tls.authorize` reads of a stream: its gRPC context."""

    def __init__(self, context) -> None:
        self.context = context
