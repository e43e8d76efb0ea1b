"""Aggregated Discovery Service over grpc.aio: state of the world and incremental (delta) xDS.

Input: DiscoveryRequests from proxies and snapshots from the cache. Output: DiscoveryResponses.
Per stream and per type it keeps what was sent, with which nonce, and what was ACKed, and follows
the xDS protocol:
- SotW: a response whose nonce is not the last one sent is stale and ignored; one version per type
  (a hash of the resources' content hashes, so replicas agree); LDS/CDS are wildcard and carry full
  state, RDS/EDS carry the requested names that exist (names that appear later are sent then).
- Delta: subscriptions change even on a stale nonce; resources carry content-hash versions;
  `initial_resource_versions` avoids resending what a reconnecting proxy has; removals are explicit.
- A NACK (error_detail set) is logged with the node and the error, counted, and not answered by
  resending the same configuration; the proxy keeps its last accepted one until the snapshot changes.
- Make-before-break: CDS first (with clusters about to be removed still in it) and ACKed before EDS,
  LDS, RDS; removals go last, once LDS and RDS are ACKed. EDS is resent after every CDS change so
  re-created EDS clusters finish warming. The order is `push.py`'s; this module keeps the protocol state.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from dataclasses import dataclass

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from ..xdsapi import (
    CLUSTER_TYPE,
    DEFAULT_OUTBOUND_PORT,
    EDGE_HOST,
    EDGE_NODE,
    LISTEN_ADDRESS_METADATA,
    OUTBOUND_PORT_METADATA,
    SHORT_NAMES,
    SIDECAR_HOST,
    TRANSPARENT_METADATA,
    TUNNEL_ACCEPT_METADATA,
    WILDCARD_TYPES,
    listen_address,
    outbound_port,
    short_name,
    version_of,
)
from . import push, trace
from .cache import SnapshotCache
from .callbacks import Callbacks
from .metrics import Metrics

log = logging.getLogger("meshforge.ads")

_nonces = itertools.count(1)


def _any(type_url: str, body: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=body)


class StreamError(Exception):
    """Ends one stream with a gRPC status (bad node metadata, a certificate for another service)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _port_value(value) -> object:
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind in ("string_value", "number_value", "bool_value") else kind


class Subscription:
    """What a stream asked for of one resource type: the wildcard apart from the names asked for by name
    (go-control-plane's `Subscription`; the rules are the xDS protocol's, "How the client specifies what
    resources to return"):
    - a first request naming nothing, for a type that may be wildcard (LDS, CDS), is the legacy wildcard;
    - the name "*" subscribes to the wildcard, and unsubscribing "*" ends it, keeping the names asked for;
    - in the legacy wildcard, a request that subscribes names without "*" ends the wildcard (a client that
      wants both sends "*" too);
    - state of the world: each request is the whole subscription."""

    def __init__(self, wildcard: bool = False, names: set[str] | None = None, legacy: bool = False) -> None:
        self.wildcard, self.names, self.legacy = wildcard, set(names or ()), legacy

    @classmethod
    def sotw(cls, names, may_be_wildcard: bool) -> "Subscription":
        names = set(names)
        return cls(may_be_wildcard and (not names or "*" in names), names - {"*"})

    @classmethod
    def delta(cls, subscribe, may_be_wildcard: bool) -> "Subscription":
        subscribe = set(subscribe)
        legacy = may_be_wildcard and not subscribe
        return cls(legacy or "*" in subscribe, subscribe - {"*"}, legacy)

    def update(self, subscribe, unsubscribe) -> None:
        subscribe, unsubscribe = list(subscribe), list(unsubscribe)
        if self.legacy and subscribe and "*" not in subscribe:
            self.wildcard = self.legacy = False
        for n in subscribe:
            if n == "*":
                self.wildcard, self.legacy = True, False
            else:
                self.names.add(n)
        for n in unsubscribe:
            if n == "*":
                self.wildcard = self.legacy = False
            else:
                self.names.discard(n)

    def key(self) -> tuple:
        """Equal for equal subscriptions (what `unchanged` compares)."""
        return (True,) if self.wildcard else (False, frozenset(self.names))


class _TypeState:
    def __init__(self) -> None:
        self.requested = False
        self.sub = Subscription()
        self.nonce: str | None = None  # last response's nonce
        self.awaiting = False  # that response is neither ACKed nor NACKed yet
        self.sent: dict = {}  # name -> resource, as last sent (SotW) / as the proxy has it (delta: versions)
        self.version: str | None = None  # SotW version_info last sent
        self.force = False  # answer the next request even if nothing changed (EDS after CDS)
        self.sent_at = 0.0
        self.src = None  # the snapshot's dict this type was last sent from ...
        self.src_key = None  # ... and under which subscription: unchanged => nothing to compare


class Mailbox:
    """A first-in first-out queue with one consumer: what asyncio.Queue does for a stream, without asking for
    the running loop on every call (asyncio.Queue.get does, and on Python 3.11 that is a getpid system call:
    an eighth of the event loop's time when an update reached 2,000 streams). The loop is taken once, at the
    first wait."""

    __slots__ = ("_items", "_waiter", "_loop")

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def put_nowait(self, item) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def put(self, item) -> None:
        self.put_nowait(item)

    async def get(self):
        while not self._items:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait(self):
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items


class _Stream:
    """One proxy connection. Subclasses say how a response is built (full state or delta)."""

    kind = "sotw"

    def __init__(self, server: "AdsServer", peer: str):
        self.server = server
        self.cache = server.cache
        self.callbacks = server.callbacks
        self.peer = peer
        self.node_id = ""
        self.node = ""  # node.cluster: the service this proxy is the sidecar of
        self.port = DEFAULT_OUTBOUND_PORT
        self.host: str | None = None  # the listener's address; None: the node kind's default
        self.transparent = False  # behind capture rules (its bootstrap's --transparent)
        self.accept: tuple[str, int] | None = None  # the tunnel node: where it takes laptops
        self.types: dict[str, _TypeState] = {}
        self.queue = Mailbox()  # requests, new snapshots, the end of the requests: what the stream acts on
        self.out = Mailbox()  # responses for the writer (AdsServer._serve); None ends it
        self.generation_seen = 0  # the snapshot generation this stream has pushed
        self.context = None  # the gRPC context (peer identity under mTLS)
        self.rejected: dict[str, str] = {}  # type URL -> why the proxy rejected its last response (NACK)
        self.error: StreamError | None = None
        self.writer: asyncio.Task | None = None  # the task handing responses to the client (AdsServer._serve)
        self.write_started: float | None = None  # time.monotonic() when the response being handed over was begun
        self.stalled = False  # the watchdog cancelled the writer: its client took no response for too long
        self._resources: dict = {}  # type URL -> name -> resource of this node in `_resources_of` (a snapshot)
        self._resources_of: object = None

    # -- identity ---------------------------------------------------------------------------
    def _identify(self, node) -> None:
        if self.node or not node.cluster and not node.id:
            return
        meta = node.metadata.fields.get(OUTBOUND_PORT_METADATA)
        if meta is not None:
            value = _port_value(meta)
            try:
                self.port = outbound_port(value)
            except ValueError as e:
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"node {node.id!r}: metadata {OUTBOUND_PORT_METADATA}: {e}") from None
        meta = node.metadata.fields.get(LISTEN_ADDRESS_METADATA)
        if meta is not None:
            try:
                self.host, self.port = listen_address(_port_value(meta))
            except ValueError as e:
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"node {node.id!r}: metadata {LISTEN_ADDRESS_METADATA}: {e}") from None
        meta = node.metadata.fields.get(TUNNEL_ACCEPT_METADATA)
        if meta is not None:
            try:
                self.accept = listen_address(_port_value(meta))
            except ValueError as e:
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"node {node.id!r}: metadata {TUNNEL_ACCEPT_METADATA}: {e}") from None
        meta = node.metadata.fields.get(TRANSPARENT_METADATA)
        if meta is not None:
            value = _port_value(meta)
            if value not in ("true", "false"):
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"node {node.id!r}: metadata {TRANSPARENT_METADATA}: {value!r} is neither "
                                  "true nor false")
            self.transparent = value == "true"
        self.callbacks.authorize(self, node)
        self.node_id, self.node = node.id, node.cluster
        self._resources_of = None  # resources are the node's: look them up again
        known = None if self.cache.snapshot is None else self.cache.known_node(self.node)
        self.callbacks.identified(self.kind, self.peer, node, self.port, known)

    def desired(self, type_url: str) -> dict:
        res = self.source(type_url)
        sub = self.types[type_url].sub
        if sub.wildcard:
            return res
        return {n: r for n, r in res.items() if n in sub.names}

    def source(self, type_url: str) -> dict:
        snapshot = self.cache.snapshot
        if self._resources_of is not snapshot:  # once per snapshot: a push asks for them a dozen times
            self._resources = self.cache.resources(self.node, self.port, self.host, self.transparent, self.accept)
            self._resources_of = snapshot
        return self._resources.get(type_url, {})

    def unchanged(self, st: _TypeState, type_url: str, keep_removed: bool) -> bool:
        """True when this type was last sent from the very same snapshot dict under the same
        subscription: the compiler reused it, so nothing in it changed (O(1), no hashing)."""
        src = self.source(type_url)
        key = (st.sub.key(), keep_removed)
        if src is st.src and key == st.src_key:
            return True
        st.src, st.src_key = src, key
        return False

    # -- ordering (push.py) -------------------------------------------------------------------
    async def push(self) -> None:
        """Send what changed, make-before-break (`push.push`)."""
        if self.cache.snapshot is None or not self.node:
            return
        await push.push(self)

    # -- requests ---------------------------------------------------------------------------
    def nack(self, type_url: str, node, error) -> None:
        self.callbacks.nacked(self.node_id or node.id, self.node or node.cluster, type_url, error,
                              first=type_url not in self.rejected)
        self.rejected[type_url] = error.message[:500]

    def ack(self, type_url: str) -> None:
        if self.rejected.pop(type_url, None) is not None:
            self.callbacks.recovered(self.node, type_url)

    async def run(self, requests) -> None:
        self.cache.subscribe(self.queue)
        self.server.streams.add(self)

        async def reader():
            try:
                async for req in requests:
                    self.queue.put_nowait(("request", req))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the peer went away
                log.debug("stream %s closed: %s", self.peer, e)
            self.queue.put_nowait(("closed", None))

        task = asyncio.ensure_future(reader())
        try:
            while True:
                what, item = await self.queue.get()
                if what == "closed":
                    break
                if what == "request":
                    if item.type_url not in SHORT_NAMES:  # no state kept for types meshforge does not serve
                        log.debug("%s asked for unknown type %r; ignored", self.node_id or self.peer, item.type_url)
                        continue
                    try:
                        await self.handle(item)
                    except StreamError as e:
                        self.callbacks.closing(self.kind, self.peer, e.message)
                        self.error = e
                        break
                elif what == "snapshot" and item != self.generation_seen:
                    self.generation_seen = item
                    await self.push()
        finally:
            task.cancel()
            for t in list(self.rejected):
                self.ack(t)
            self.cache.unsubscribe(self.queue)
            self.server.streams.discard(self)
            await self.out.put(None)

    def _record_push(self, type_url: str) -> None:
        # a push caused by a new snapshot (not a proxy's first request) says when that snapshot was published
        caused = self.generation_seen and self.generation_seen == self.cache.generation and self.generation_seen > 1
        self.callbacks.pushed(type_url, self.cache.published_at if caused else None)


class SotwStream(_Stream):
    kind = "sotw"

    async def handle(self, req: discovery_pb2.DiscoveryRequest) -> None:
        self._identify(req.node)
        t = req.type_url
        log.debug("%s <- %s nonce=%s names=%d error=%s", self.node_id, short_name(t), req.response_nonce,
                  len(req.resource_names), req.HasField("error_detail"))
        st = self.types.setdefault(t, _TypeState())
        if req.response_nonce:
            if req.response_nonce != st.nonce:
                return  # stale: a response to something we have since replaced
            if req.HasField("error_detail"):
                st.awaiting = False
                self.nack(t, req.node, req.error_detail)
                return
            st.awaiting = False  # ACK
            self.ack(t)
            if trace.on():
                trace.mark("ack", node=self.node, type=short_name(t))
        sub = Subscription.sotw(req.resource_names, t in WILDCARD_TYPES)
        changed = not st.requested or sub.key() != st.sub.key()
        st.requested, st.sub = True, sub
        if self.cache.snapshot is None:
            return  # no valid configuration yet: answer nothing rather than an empty one
        if changed or st.force:
            st.force = False
            await self.send(t, keep_removed=push.keep_removed(self, t), always=True)
        await self.push()

    async def send(self, t: str, keep_removed: bool = False, always: bool = False) -> bool:
        st = self.types[t]
        if not always and (st.awaiting or self.unchanged(st, t, keep_removed)):
            return False
        if always:
            st.src = None
        res = self.desired(t)
        if t == CLUSTER_TYPE and keep_removed and any(n not in res for n in st.sent):
            res = dict(res)
            for name, r in st.sent.items():
                res.setdefault(name, r)  # removals last
        version = version_of(res)
        if version == st.version and not always:
            return False
        nonce = str(next(_nonces))
        resp = discovery_pb2.DiscoveryResponse(version_info=version, type_url=t, nonce=nonce,
                                               resources=[_any(t, res[n].body) for n in sorted(res)])
        st.nonce, st.version, st.sent, st.awaiting, st.sent_at = nonce, version, res, True, time.monotonic()
        log.debug("%s -> %s nonce=%s resources=%d", self.node_id, short_name(t), nonce, len(res))
        await self.out.put(resp)
        self._record_push(t)
        return True


class DeltaStream(_Stream):
    kind = "delta"

    async def handle(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        self._identify(req.node)
        t = req.type_url
        first = t not in self.types
        st = self.types.setdefault(t, _TypeState())
        if first:
            st.sent = dict(req.initial_resource_versions)  # name -> version the proxy already has
            st.sub = Subscription.delta(req.resource_names_subscribe, t in WILDCARD_TYPES)
            st.requested = True
        else:
            # subscription changes apply whatever the nonce says
            st.sub.update(req.resource_names_subscribe, req.resource_names_unsubscribe)
            for n in (*req.resource_names_subscribe, *req.resource_names_unsubscribe):
                st.sent.pop(n, None)  # a (re)subscribe asks for the resource; an unsubscribe under the
                # wildcard for its state again (the proxy dropped it)
        if req.response_nonce and req.response_nonce == st.nonce:
            st.awaiting = False
            if req.HasField("error_detail"):
                self.nack(t, req.node, req.error_detail)
            else:
                self.ack(t)
        if self.cache.snapshot is None:
            return  # no valid configuration yet: answer nothing rather than an empty one
        if first or req.resource_names_subscribe or req.resource_names_unsubscribe:
            # a new subscription is answered at once; anything else that changed goes out through push, in order
            await self.send(t, keep_removed=push.keep_removed(self, t),
                            always=first and not st.sent)
        await self.push()

    async def send(self, t: str, keep_removed: bool = False, always: bool = False) -> bool:
        st = self.types[t]
        if st.awaiting and not always:
            return False
        if always or st.force:
            st.src = None
        elif self.unchanged(st, t, keep_removed):
            return False
        desired = self.desired(t)
        changed = {n: r for n, r in desired.items() if st.sent.get(n) != r.version}
        removed = [n for n in st.sent if n not in desired]
        if t == CLUSTER_TYPE and keep_removed:
            removed = []
        if st.force:
            st.force = False
            changed = dict(desired)
        if not changed and not removed and not (always and st.nonce is None):
            return False
        nonce = str(next(_nonces))
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version_of(desired), type_url=t, nonce=nonce, removed_resources=sorted(removed),
            resources=[discovery_pb2.Resource(name=n, version=changed[n].version, resource=_any(t, changed[n].body))
                       for n in sorted(changed)])
        for n in removed:
            st.sent.pop(n, None)
        for n, r in changed.items():
            st.sent[n] = r.version
        st.nonce, st.awaiting, st.sent_at = nonce, True, time.monotonic()
        await self.out.put(resp)
        self._record_push(t)
        return True


@dataclass(frozen=True)
class Limits:
    """What a client may hold of the server. A proxy holds one ADS stream and takes what it is sent; a client
    that opens many, or asks for a large configuration and never reads it, would otherwise grow the server's
    memory without end."""

    streams_per_peer: int = 128  # ADS streams from one address (a proxy holds one; a NAT in front of many)
    stall_seconds: float = 30.0  # a response not taken by its client for this long ends the stream
    pending_bytes: int = 128 * 1024 * 1024  # responses written and not yet taken, over all streams: above it,
    # new streams are refused until clients take theirs or their connections close


def _peer_host(peer: str) -> str:
    """`ipv4:10.0.0.7:51234` / `ipv6:[::1]:51234` -> the address, without the port."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:rest.find("]")]
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else peer


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, cache: SnapshotCache, metrics: Metrics, authorize=None, limits: Limits = Limits(),
                 callbacks: Callbacks | None = None):
        self.cache = cache
        # metrics, log lines and authorisation; `authorize`: (stream, node) -> None, or raises StreamError
        self.callbacks = callbacks or Callbacks(metrics, authorize, cache.known_node)
        self.streams: set[_Stream] = set()
        self.limits = limits
        self._per_peer: dict[str, int] = {}
        self.pending_bytes = 0  # written to clients, not yet taken by them
        self.ended = collections.Counter()  # reason -> streams the server ended for it
        self._watchdog: asyncio.Task | None = None  # ends streams whose client takes no response (`_watch`)
        self._writing: set[_Stream] = set()  # streams whose writer runs (`_serve`): what the watchdog watches

    def rejections(self) -> dict[str, str]:
        """Connected proxies that rejected what they were last sent: "cluster (id)" -> "TYPE: message"."""
        return {f"{s.node} ({s.node_id})": "; ".join(f"{short_name(t)}: {m}" for t, m in sorted(s.rejected.items()))
                for s in list(self.streams) if s.rejected}

    def proxies(self) -> list[dict]:
        """The connected proxies: node, id, protocol, the snapshot generation pushed, and per type its
        version (state of the world) or resource count (delta) and whether it is ACKed, pending or NACKed."""
        out = []
        for s in list(self.streams):
            if not s.node:
                continue
            types = {}
            for t, st in list(s.types.items()):
                state = "NACK" if t in s.rejected else "pending" if st.awaiting else "ACK"
                types[short_name(t)] = {"version": st.version if s.kind == "sotw" else f"{len(st.sent)} resources",
                                        "state": state, "error": s.rejected.get(t)}
            host = s.host or (EDGE_HOST if s.node == EDGE_NODE else SIDECAR_HOST)
            out.append({"node": s.node, "id": s.node_id, "protocol": s.kind, "generation": s.generation_seen,
                        "types": types, "listener": f"[{host}]:{s.port}" if ":" in host else f"{host}:{s.port}"})
        return sorted(out, key=lambda p: (p["node"], p["id"]))

    async def _serve(self, stream: _Stream, request_iterator, context) -> None:
        peer = _peer_host(context.peer())
        refuse = None
        if self._per_peer.get(peer, 0) >= self.limits.streams_per_peer:
            refuse = ("streams per peer", f"{self.limits.streams_per_peer} xDS streams from {peer} already")
        elif self.pending_bytes > self.limits.pending_bytes:
            refuse = ("pending bytes", f"{self.pending_bytes} bytes of responses wait for clients that have not taken "
                      f"them (the limit is {self.limits.pending_bytes}); try again later")
        if refuse is not None:
            self.ended[refuse[0]] += 1
            self.callbacks.refused(peer, *refuse)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refuse[1])
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        # counted as connected exactly while it holds its peer's slot: when the gauge drops, the slot is free
        self.callbacks.connected(stream.kind, +1)
        stream.context = context
        stream.writer = asyncio.current_task()
        self._writing.add(stream)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())
        runner = asyncio.ensure_future(stream.run(request_iterator))
        try:
            while True:
                resp = await stream.out.get()
                if resp is None or not await self._write(stream, resp, context):
                    break
        finally:
            runner.cancel()
            self._writing.discard(stream)
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]
            self.callbacks.connected(stream.kind, -1)
        if stream.error is not None:
            await context.abort(stream.error.code, stream.error.message)

    async def _write(self, stream: _Stream, resp, context) -> bool:
        """Hand one response to the client; False when the stream ends because the client does not take it.
        Its bytes then stay in the transport until the connection closes (serve closes every connection after
        `MAX_CONNECTION_AGE`): they are counted until the RPC is done."""
        size = resp.ByteSize()
        self.pending_bytes += size
        stream.write_started = time.monotonic()
        try:
            await context.write(resp)
            if trace.on():
                trace.mark("sent", node=stream.node, type=short_name(resp.type_url))
        except asyncio.CancelledError:
            if not stream.stalled:
                self._release(size)
                raise
            asyncio.current_task().uncancel()  # the watchdog's cancel is handled here: the stream ends as stalled
            self.ended["stalled"] += 1
            self.callbacks.stalled(stream.kind, stream.node_id or stream.peer, size, self.limits.stall_seconds)
            stream.error = StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, "ended by meshforge: a response was not "
                                       f"taken in {self.limits.stall_seconds:g} s")
            context.add_done_callback(lambda _: self._release(size))
            return False
        except BaseException:
            self._release(size)
            raise
        finally:
            stream.write_started = None
        self._release(size)
        return True

    async def _watch(self) -> None:
        """The stall timeout of every stream's writes, as one task: a few times per timeout it ends the
        streams whose response has waited longer (their writer is cancelled and says why). One timer for all
        instead of one per response (`asyncio.wait_for` made a task, a timer and futures for each write:
        a tenth of the server's CPU when an update reached 2,000 streams). Ends when no stream is left."""
        limit = self.limits.stall_seconds
        while self._writing:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for s in list(self._writing):
                started = s.write_started
                if started is not None and now - started > limit and not s.stalled:
                    s.stalled = True
                    s.writer.cancel()

    def _release(self, size: int) -> None:
        self.pending_bytes -= size

    async def StreamAggregatedResources(self, request_iterator, context):
        await self._serve(SotwStream(self, context.peer()), request_iterator, context)

    async def DeltaAggregatedResources(self, request_iterator, context):
        await self._serve(DeltaStream(self, context.peer()), request_iterator, context)
