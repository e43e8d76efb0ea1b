"""The Kubernetes API, as the controller uses it: every object a plain dict, every kind a row of one table.

lightkube (async, httpx) is the client: it reads kubeconfig files and in-cluster service-account
credentials, does server-side apply, list and watch; meshforge's own code handles nothing of HTTP or
TLS. Every kind goes through lightkube's generic resources, so what the controller reads and writes is
the object as the API server has it, without a model class in between dropping fields it does not know.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2 as httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from ..ownership import MANAGER

log = logging.getLogger("meshforge.controller")
logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.kind)

    def __str__(self) -> str:
        return f"{self.kind}.{self.group or 'core'}"


SANDBOX = Kind("meshforge.dev", "v1alpha1", "Sandbox", "sandboxes")
BASELINE = Kind("meshforge.dev", "v1alpha1", "Baseline", "baselines")
ROUTE_GROUP = Kind("meshforge.dev", "v1alpha1", "RouteGroup", "routegroups")
SERVICE = Kind("", "v1", "Service", "services")
CONFIG_MAP = Kind("", "v1", "ConfigMap", "configmaps")
EVENT = Kind("", "v1", "Event", "events")
DEPLOYMENT = Kind("apps", "v1", "Deployment", "deployments")
STATEFUL_SET = Kind("apps", "v1", "StatefulSet", "statefulsets")
ENDPOINT_SLICE = Kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
LEASE = Kind("coordination.k8s.io", "v1", "Lease", "leases")
VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "VirtualService", "virtualservices")
DESTINATION_RULE = Kind("networking.istio.io", "v1", "DestinationRule", "destinationrules")
SERVICE_ENTRY = Kind("networking.istio.io", "v1", "ServiceEntry", "serviceentries")
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
GRPC_ROUTE = Kind("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes")
ROLLOUT = Kind("argoproj.io", "v1alpha1", "Rollout", "rollouts")
REFERENCE_GRANT = Kind("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants")

KINDS = [SANDBOX, BASELINE, ROUTE_GROUP, SERVICE, CONFIG_MAP, DEPLOYMENT, STATEFUL_SET, ENDPOINT_SLICE,
         VIRTUAL_SERVICE, DESTINATION_RULE, SERVICE_ENTRY, HTTP_ROUTE, GRPC_ROUTE, ROLLOUT, REFERENCE_GRANT]
BY_KEY = {k.key: k for k in KINDS + [EVENT, LEASE]}

_classes: dict[Kind, type] = {}


def resource(kind: Kind) -> type:
    cls = _classes.get(kind)
    if cls is None:
        make = create_namespaced_resource if kind.namespaced else create_global_resource
        cls = _classes[kind] = make(kind.group, kind.version, kind.kind, kind.plural)
    return cls


def _plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith("y"):
        return low[:-1] + "ies"
    return low + ("es" if low.endswith(("s", "x", "ch", "sh")) else "s")


def kind_of(obj: dict) -> Kind:
    """The object's kind at the object's own API version (a table row's plural, or the usual English one)."""
    api = str(obj.get("apiVersion", ""))
    group, version = api.rsplit("/", 1) if "/" in api else ("", api)
    name = str(obj.get("kind", ""))
    known = BY_KEY.get((group, name))
    plural = known.plural if known is not None else _plural(name)
    return Kind(group, version, name, plural, known.namespaced if known is not None else True)


def as_dict(obj, kind: Kind | None = None) -> dict:
    """The object as plain data; items of a list carry no apiVersion and kind of their own: `kind` gives them."""
    out = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    if kind is not None:
        out["apiVersion"], out["kind"] = kind.api_version, kind.kind
    return out


class Cluster:
    """One API server connection."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        self.client = AsyncClient(config.get(context) if context else config, field_manager=MANAGER,
                                  timeout=httpx.Timeout(30.0))

    async def close(self) -> None:
        await self.client.close()

    async def served(self, kind: Kind) -> bool:
        """Whether the API server serves this kind (a CRD that is not installed: no)."""
        try:
            async for _ in self.client.list(resource(kind), namespace="*" if kind.namespaced else None, chunk_size=1):
                break
            return True
        except httpx.HTTPStatusError as e:  # lightkube's ApiError is one
            if e.response.status_code in (404, 405):
                return False
            raise

    async def list(self, kind: Kind, namespace: str = "*") -> tuple[list[dict], str]:
        """Every object of a kind, and the resourceVersion to watch from."""
        items = []
        lst = self.client.list(resource(kind), namespace=namespace if kind.namespaced else None)
        async for obj in lst:
            items.append(as_dict(obj, kind))
        return items, getattr(lst, "resourceVersion", None) or ""

    async def watch(self, kind: Kind, resource_version: str, namespace: str = "*") -> AsyncIterator[tuple[str, dict]]:
        async for event, obj in self.client.watch(resource(kind), namespace=namespace if kind.namespaced else None,
                                                  resource_version=resource_version or None, server_timeout=300):
            yield event, as_dict(obj, kind)

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict | None:
        try:
            return as_dict(await self.client.get(resource(kind), name, namespace=namespace), kind)
        except httpx.HTTPStatusError as e:
            if e.response.status_code == 404:
                return None
            raise

    async def apply(self, obj: dict, status: bool = False) -> dict:
        """Server-side apply, field manager meshforge, taking the fields over from any other manager."""
        res = resource(kind_of(obj))
        meta = obj.get("metadata") or {}
        if status:
            out = await self.client.apply(res.Status(obj), name=meta.get("name"), namespace=meta.get("namespace"),
                                          field_manager=MANAGER, force=True)
        else:
            out = await self.client.apply(res(obj), field_manager=MANAGER, force=True)
        return as_dict(out)

    async def delete(self, kind: Kind, name: str, namespace: str | None) -> bool:
        try:
            await self.client.delete(resource(kind), name, namespace=namespace)
            return True
        except httpx.HTTPStatusError as e:
            if e.response.status_code == 404:
                return False
            raise

    async def create(self, obj: dict) -> dict:
        return as_dict(await self.client.create(resource(kind_of(obj))(obj)))

    async def replace(self, obj: dict) -> dict:
        """PUT: fails with 409 when the object changed since `obj` was read (its resourceVersion)."""
        return as_dict(await self.client.replace(resource(kind_of(obj))(obj)))


def code(e: BaseException) -> int | None:
    return e.response.status_code if isinstance(e, httpx.HTTPStatusError) else None


def conflict(e: BaseException) -> bool:
    return code(e) in (409, 422)


async def sleep_until(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
