"""serve's xDS logic in process: the ADS streams, the snapshot cache and the serve session, without gRPC,
a subprocess or a clock. Each request is handled to completion before `send` returns, and every response it
caused is then in the stream's queue, so "nothing was sent" is a fact, not a wait. A spec change is compiled and
published, and every stream pushes what changed for it, before `write` returns: the order responses come in is
the server's own (make-before-break included).

The same surface as serve_harness.RawClient (`send`, `recv`, `nothing`), so a protocol test reads the same either
way; the end-to-end tests with a real `serve` and real Envoys stay in test_ads_protocol.py and test_serve.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

from envoy.service.discovery.v3 import discovery_pb2

from meshforge.server.ads import AdsServer, DeltaStream, SotwStream, StreamError
from meshforge.server.cache import SnapshotCache
from meshforge.server.metrics import Metrics
from meshforge.session import Session


class Mesh:
    """A spec directory served: `client()` opens a stream, `write`/`unlink` change the specs."""

    def __init__(self, d: Path, authorize=None, callbacks=None):
        """`callbacks`: a class taking (metrics, authorize, known_node), as server.callbacks.Callbacks."""
        self.dir = d
        self.session = Session([str(d)])
        self.cache = SnapshotCache()
        self.metrics = Metrics()
        self.ads = AdsServer(self.cache, self.metrics, authorize,
                             callbacks=callbacks and callbacks(self.metrics, authorize, self.cache.known_node))
        self.loop = asyncio.new_event_loop()
        self.clients: list[Client] = []
        self.errors: list[str] = []
        self.reload()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def reload(self) -> None:
        """Compile every spec and publish the snapshot when it changed; each stream then pushes, as serve's do."""
        result = self.session.compile(datetime.now(timezone.utc))
        self.errors = result.errors
        if result.snapshot is None:
            return
        old = self.cache.snapshot
        if old is not None and old.nodes.keys() == result.snapshot.nodes.keys() and \
                all(a is b for a, b in zip(old.nodes.values(), result.snapshot.nodes.values())):
            return  # the compiler reused every node: nothing to publish (serve's `_unchanged`)
        self.cache.publish(result.snapshot)
        for c in self.clients:
            c.stream.generation_seen = self.cache.generation
            self.run(c.stream.push())

    def write(self, name: str, text: str) -> None:
        (self.dir / name).write_text(text)
        self.reload()

    def unlink(self, name: str) -> None:
        (self.dir / name).unlink()
        self.reload()

    def client(self, delta: bool = False) -> "Client":
        c = Client(self, delta)
        self.clients.append(c)
        return c

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def close(self) -> None:
        self.loop.close()


class Client:
    """One ADS stream of a proxy, driven by hand."""

    def __init__(self, mesh: Mesh, delta: bool):
        self.mesh = mesh
        self.stream = (DeltaStream if delta else SotwStream)(mesh.ads, "ipv4:127.0.0.1:40000")
        self.stream.generation_seen = mesh.cache.generation
        mesh.ads.streams.add(self.stream)
        self.error: StreamError | None = None

    def send(self, **kw) -> None:
        """A request (a DeltaDiscoveryRequest when it has delta fields or delta=True), handled to completion."""
        delta = kw.pop("delta", False) or any(k in kw for k in ("resource_names_subscribe", "resource_names_unsubscribe",
                                                                 "initial_resource_versions"))
        req = (discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest)(**kw)
        try:
            self.mesh.run(self.stream.handle(req))
        except StreamError as e:  # the server would end the stream with this status
            self.error = e

    def recv(self):
        """The next response the server sent on this stream; AssertionError when it sent none."""
        assert not self.stream.out.empty(), "the server sent nothing"
        return self.stream.out.get_nowait()

    def nothing(self) -> bool:
        return self.stream.out.empty()

    def all(self) -> list:
        """Every response sent and not read yet, in order."""
        out = []
        while not self.stream.out.empty():
            out.append(self.stream.out.get_nowait())
        return out

    def close(self) -> None:
        self.mesh.clients.remove(self)
        self.mesh.ads.streams.discard(self.stream)
