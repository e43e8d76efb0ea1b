"""controller/reconcile: one reconcile in process, against a fake API that hands every write back as the watch would.
A workload fork is applied at once and its routes only once its Service has a ready endpoint; deleting the Sandbox
removes routes before workloads and then its finalizer; a follower writes nothing. The same against a real
kube-apiserver, with RBAC, expiry, downtime and failover: tests/test_controller.py."""

from __future__ import annotations

import asyncio
import copy

from meshforge.controller import kube
from meshforge.controller.reconcile import FINALIZER, Controller, Options


class FakeApi:
    """Writes are kept and handed to the controller as watch events, in order."""

    def __init__(self):
        self.controller: Controller | None = None
        self.objects: dict[tuple, dict] = {}
        self.log: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.version = 0

    def put(self, obj: dict, verb: str = "put") -> None:
        obj = copy.deepcopy(obj)
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        event = "ADDED" if key not in self.objects else "MODIFIED"
        self.objects[key] = obj
        if verb != "put":
            self.log.append((verb, obj["kind"], meta["name"]))
        self.controller._store(kube.kind_of(obj), event, obj)

    async def apply(self, obj: dict, status: bool = False) -> dict:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        merged = copy.deepcopy(self.objects.get(key, {}))
        if status:
            merged["status"] = obj["status"]
        else:
            merged.update({k: v for k, v in obj.items() if k != "metadata"})
            merged["metadata"] = {**merged.get("metadata", {}), **meta}
        self.put(merged, "status" if status else "apply")
        return merged

    async def delete(self, kind: kube.Kind, name: str, namespace: str | None) -> bool:
        obj = self.objects.pop((kind.kind, namespace, name))
        self.log.append(("delete", kind.kind, name))
        self.controller._store(kind, "DELETED", obj)
        return True

    async def create(self, obj: dict) -> dict:
        self.log.append(("create", obj["kind"], obj["metadata"]["name"]))
        return obj


def app(name: str) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
             "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
             "spec": {"selector": {"matchLabels": {"app": name}},
                      "template": {"metadata": {"labels": {"app": name}},
                                   "spec": {"containers": [{"name": name, "image": f"example/{name}:v1"}]}}}}]


SANDBOX = {"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox",
           "metadata": {"name": "pr-1", "namespace": "shop", "generation": 1, "uid": "u-1"},
           "spec": {"forks": [{"service": "cart", "to": {"workload": {"images": [{"image": "example/cart:pr-1"}]}}}]}}


def ready_slice(service: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": True}}]}


def conditions(api: FakeApi) -> dict[str, str]:
    cr = api.objects[("Sandbox", "shop", "pr-1")]
    return {c["type"]: f"{c['status']} {c['reason']}" for c in cr.get("status", {}).get("conditions", [])}


def shop() -> tuple[FakeApi, Controller]:
    api = FakeApi()
    api.controller = Controller(api, Options(backend="istio"))
    for obj in app("cart") + app("web"):
        api.put(obj)
    api.put(SANDBOX)
    return api, api.controller


def written(api: FakeApi, verb: str) -> list[str]:
    return [kind for v, kind, _ in api.log if v == verb]


def test_a_workload_fork_is_applied_at_once_and_routed_to_once_its_service_has_a_ready_endpoint():
    api, c = shop()
    asyncio.run(c.reconcile())
    assert sorted(written(api, "apply")) == ["Deployment", "Sandbox", "Service"]  # the Sandbox: its finalizer
    assert FINALIZER in api.objects[("Sandbox", "shop", "pr-1")]["metadata"]["finalizers"]
    assert conditions(api)["WorkloadsReady"] == "False WaitingForEndpoints"
    assert conditions(api)["RoutesProgrammed"] == "False WaitingForWorkloads"
    fork = next(name for kind, _, name in api.objects if kind == "Service" and name.startswith("cart-pr-1-"))
    assert c.live == set()

    api.log.clear()
    api.put(ready_slice(fork))
    asyncio.run(c.reconcile())
    assert "VirtualService" in written(api, "apply") and "Deployment" not in written(api, "apply")  # unchanged: kept
    assert c.live == {"pr-1"} and conditions(api)["Ready"] == "True Ready"
    assert ("create", "Event", "pr-1") in [(v, k, n.split(".")[0]) for v, k, n in api.log]  # Ready is an Event


def test_deleting_a_sandbox_removes_its_routes_before_its_workloads_then_its_finalizer():
    api, c = shop()
    asyncio.run(c.reconcile())
    fork = next(name for kind, _, name in api.objects if kind == "Service" and name.startswith("cart-pr-1-"))
    api.put(ready_slice(fork))
    asyncio.run(c.reconcile())
    api.log.clear()
    cr = copy.deepcopy(api.objects[("Sandbox", "shop", "pr-1")])
    cr["metadata"]["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    api.put(cr)
    asyncio.run(c.reconcile())
    deleted = written(api, "delete")
    assert deleted[0] == "VirtualService" and set(deleted[-2:]) == {"Deployment", "Service"}
    assert not [k for k in api.objects if k[2].startswith("cart-pr-1-") and k[0] != "EndpointSlice"]
    assert not [k for k in api.objects if k[0] == "VirtualService"]
    assert api.objects[("Sandbox", "shop", "pr-1")]["metadata"]["finalizers"] == []


def test_a_follower_writes_nothing():
    class Follower:  # another replica holds the lease
        leading = False

    api = FakeApi()
    api.controller = c = Controller(api, Options(backend="istio"), elector=Follower())
    for obj in app("cart"):
        api.put(obj)
    api.put(SANDBOX)
    asyncio.run(c.reconcile())
    assert api.log == [] and c.model is not None and [s.name for s in c.model.sandboxes] == ["pr-1"]
