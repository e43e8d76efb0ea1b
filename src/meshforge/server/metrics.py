"""Prometheus metrics of the control plane (prometheus_client: exposition format and histograms done right).

Every label takes values from a fixed set (xDS type short names, "sotw"/"delta", reload results, known
services): nothing a client sends can grow the number of series.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

disable_created_metrics()  # *_created series are noise for a control plane


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.connected = Gauge("meshforge_connected_proxies", "Connected xDS streams.", ["stream"], registry=r)
        self.pushes = Counter("meshforge_xds_pushes_total", "xDS responses sent.", ["type"], registry=r)
        self.push_latency = Histogram(
            "meshforge_xds_push_latency_seconds", "From a snapshot being published to a response carrying it being sent.",
            ["type"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5))
        self.nacks = Counter("meshforge_xds_nacks_total", "xDS responses rejected by proxies.", ["type"], registry=r)
        self.rejected = Gauge("meshforge_proxy_config_rejected", "Connected proxies whose last response of a type "
                              "they rejected (NACK), by node (a known service, else unknown) and type.",
                              ["node", "type"], registry=r)
        self.spec_errors = Gauge("meshforge_spec_errors", "Errors in the specs on disk now (0: valid).", registry=r)
        self.spec_valid = Gauge("meshforge_spec_valid", "1 when the specs on disk compiled; 0 while the last good "
                                "configuration is served instead.", registry=r)
        self.reloads = Counter("meshforge_reloads_total", "Spec reloads.", ["result"], registry=r)
        self.compile_seconds = Histogram("meshforge_compile_seconds", "Reload: read, validate, resolve, compile.",
                                         registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.generation = Gauge("meshforge_snapshot_generation", "Snapshots published since start.", registry=r)
        self.streams_ended = Counter("meshforge_xds_streams_ended_total", "xDS streams the server refused or ended to "
                                     "protect itself, by reason (streams per peer, pending bytes, stalled).",
                                     ["reason"], registry=r)
        self.access_log_dropped = Counter("meshforge_access_log_dropped_total", "Access log entries dropped, by reason "
                                          "(malformed, not the node's cluster).", ["reason"], registry=r)
