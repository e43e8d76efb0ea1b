"""`meshforge controller`, assembled: the API connection, leader election, the optional xDS server and the
reconcile loop, run until SIGINT or SIGTERM (then the lease is given up and everything closed)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from dataclasses import dataclass

from ..server.ads import Limits
from . import kube
from .leader import LeaderElector
from .reconcile import Controller, Options

log = logging.getLogger("meshforge.controller")

POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass
class ControllerSettings:
    kubeconfig: str | None
    context: str | None
    options: Options
    xds_address: str | None = None
    admin_address: str | None = None
    leader_elect: bool = False
    lease_namespace: str | None = None
    lease_name: str = "meshforge-controller"
    lease_duration: float = 15.0
    lease_renew: float = 5.0
    identity: str | None = None
    access_log_rate: int | None = 100


def _own_namespace() -> str:
    try:
        with open(POD_NAMESPACE_FILE) as f:
            return f.read().strip() or "meshforge-system"
    except OSError:
        return os.environ.get("POD_NAMESPACE") or "meshforge-system"


async def run(settings: ControllerSettings) -> int:
    cluster = kube.Cluster(settings.kubeconfig, settings.context)
    elector = None
    if settings.leader_elect:
        identity = settings.identity or f"{socket.gethostname()}-{secrets.token_hex(4)}"
        elector = LeaderElector(cluster, settings.lease_namespace or _own_namespace(), settings.lease_name, identity,
                                settings.lease_duration, settings.lease_renew)
    xds = None
    if settings.xds_address:
        from ..emit.xds.resources import AccessLogs
        from ..server.control import ControlPlane
        from .xds import ClusterCompiler

        logs = AccessLogs(settings.access_log_rate) if settings.access_log_rate is not None else None
        xds = ControlPlane(ClusterCompiler(logs), settings.xds_address, settings.admin_address,
                           access_log_rate=settings.access_log_rate, limits=Limits())
    controller = Controller(cluster, settings.options, elector, xds)
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(controller.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError):
            pass
    log.info("controller: backend %s%s%s", settings.options.backend or "none (xDS)",
             f", xDS on {settings.xds_address}" if xds else "", ", leader election on" if elector else "")
    code = 0
    try:
        await task
    except asyncio.CancelledError:
        log.info("shutting down")
    except SystemExit as e:
        log.error("%s", e.code)
        code = 2
    finally:
        if xds is not None:
            await xds.stop()
        await cluster.close()
    return code
