"""What the ADS server tells the world about its streams: metrics, log lines, and who may ask for what.

The streams (`ads.py`) keep the protocol's state and call these at each event; nothing here changes what is
sent. One object per server (go-control-plane's `server.Callbacks`), so a test passes a recording one
(tests/test_callbacks.py) and metrics or logging never have to be read back out of a protocol test.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ..xdsapi import short_name
from .metrics import Metrics

log = logging.getLogger("meshforge.ads")


class Callbacks:
    def __init__(self, metrics: Metrics, authorize: Callable | None = None,
                 known_node: Callable[[str], bool] = lambda node: True):
        self.metrics = metrics
        self._authorize = authorize  # (stream, node) -> None, or raises StreamError (mTLS identities)
        self._known_node = known_node

    def node_label(self, node: str) -> str:
        """A metric label from a fixed set: a known service, or "unknown"."""
        return node if self._known_node(node) else "unknown"

    # -- a stream's life ------------------------------------------------------------------------
    def refused(self, peer: str, reason: str, message: str) -> None:
        self.ended(reason)
        log.warning("refusing an xDS stream from %s: %s", peer, message)

    def connected(self, kind: str, delta: int) -> None:
        """+1 when a stream takes its peer's slot, -1 when it gives it back."""
        self.metrics.connected.labels(kind).inc(delta)

    def ended(self, reason: str) -> None:
        self.metrics.streams_ended.labels(reason).inc()

    def stalled(self, kind: str, who: str, size: int, seconds: float) -> None:
        self.ended("stalled")
        log.warning("ending the %s stream of %s: a response of %d bytes was not taken in %g s", kind, who, size,
                    seconds)

    def closing(self, kind: str, peer: str, message: str) -> None:
        log.warning("closing the %s stream from %s: %s", kind, peer, message)

    # -- identity -------------------------------------------------------------------------------
    def authorize(self, stream, node) -> None:
        """Raises StreamError when this peer may not be `node` (serve's mutual TLS); None otherwise."""
        if self._authorize is not None:
            self._authorize(stream, node)

    def identified(self, kind: str, peer: str, node, port: int, known: bool | None) -> None:
        """`known`: whether node.cluster names a service of the snapshot (None: no snapshot yet)."""
        if known is False:
            log.warning("node %s (cluster %r) names no known service (nor the edge, when one is declared): it "
                        "gets an empty configuration; set node.cluster to name.namespace of a baseline service",
                        node.id, node.cluster)
        log.info("%s stream from %s: node %s, cluster %s, outbound port %d", kind, peer, node.id, node.cluster, port)

    # -- responses ------------------------------------------------------------------------------
    def pushed(self, type_url: str, published_at: float | None) -> None:
        """A response went out; `published_at`: when the snapshot that caused it was published (None: it
        answered a request, not a new snapshot)."""
        self.metrics.pushes.labels(short_name(type_url)).inc()
        if published_at is not None:
            self.metrics.push_latency.labels(short_name(type_url)).observe(time.monotonic() - published_at)

    def nacked(self, node_id: str, node: str, type_url: str, error, first: bool) -> None:
        """The proxy rejected a response; `first`: it had accepted this type's last one."""
        self.metrics.nacks.labels(short_name(type_url)).inc()
        log.error("NACK from node %s (cluster %s) for %s: %s (code %d); keeping its last accepted configuration",
                  node_id, node, short_name(type_url), error.message, error.code)
        if first:
            self.metrics.rejected.labels(self.node_label(node), short_name(type_url)).inc()

    def recovered(self, node: str, type_url: str) -> None:
        """A type the proxy had rejected is accepted again (or its stream ended)."""
        self.metrics.rejected.labels(self.node_label(node), short_name(type_url)).dec()
