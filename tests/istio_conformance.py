"""Istio's own translation as the judge: a meshforge model → the cluster an Istio mesh would run it in (Services,
Pods, EndpointSlices), meshforge's rendered objects → Istio's pilot (conformance/istio/translate) → a real Envoy
→ real requests. Which cluster answered is Istio's decision: every cluster of the translated bootstrap is given
one local backend that answers with the cluster's name (the one test-side change; Istio's routes, matches and
clusters are as Istio built them)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import yaml

from meshforge.envoyproc import Envoy, free_port
from meshforge.model import HostDestination, Model, SubsetDestination
from meshforge.sampleapp import Backend, http_get

from .istio_eval import NO_CLUSTER, NO_ROUTE

TRANSLATE = Path(__file__).resolve().parents[1] / "conformance" / "istio" / "translate"
APP_PROTOCOL = {"HTTP": "http", "HTTP2": "http2", "GRPC": "grpc", "GRPC-WEB": "grpc-web", "TCP": "tcp", "TLS": "tls",
                "HTTPS": "https"}


def build() -> None:
    r = subprocess.run([sys.executable, str(TRANSLATE), "--build-only"], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr


def cluster_objects(model: Model, generated: list[dict]) -> list[dict]:
    """What a cluster running the model holds: a Service per model service (its ports, the protocol meshforge
    routes by as appProtocol), a Pod per workload (its labels: what DestinationRule subsets select) and per
    label subset a fork names, EndpointSlices tying them together; the fork Services meshforge generated; and
    a Service for every host fork to a `<name>.<namespace>.svc.cluster.local` the inputs do not define (in a
    cluster the fork's own Service)."""
    out: list[dict] = []
    namespaces = {s.namespace for s in model.services}
    ip = iter(f"10.{i // 250}.{i % 250}.{j}" for i in range(1, 10_000) for j in range(1, 2))
    vip = iter(f"10.96.{i // 250}.{i % 250 + 1}" for i in range(10_000))
    known = {(s.namespace, s.name) for s in model.services}
    subsets: dict[str, list[dict]] = {}
    for kr in model.keys:
        for f in kr.forks:
            if isinstance(f.destination, SubsetDestination):
                subsets.setdefault(f.service, []).append(dict(f.destination.labels))
    for svc in model.services:
        ports = [{"name": p.name or f"port-{p.number}", "port": p.number, "targetPort": p.number + 10_000,
                  **({"appProtocol": APP_PROTOCOL[p.protocol]} if p.protocol in APP_PROTOCOL else {})}
                 for p in svc.ports]
        select = {"mf-test-service": svc.name}
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc.name, "namespace": svc.namespace},
                    "spec": {"clusterIP": next(vip), "selector": select, "ports": ports}})
        labels = [dict(w.labels) for w in svc.workloads] or [{"app": svc.name}]
        labels += [{**labels[0], **s} for s in subsets.get(svc.id, [])]
        endpoints = []
        for i, lab in enumerate(labels):
            name, address = f"{svc.name}-{i}", next(ip)
            out.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": svc.namespace, "labels": {**lab, **select}},
                        "spec": {"containers": [{"name": "app", "image": "app"}]},
                        "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
                                   "conditions": [{"type": "Ready", "status": "True"}]}})
            endpoints.append({"addresses": [address], "conditions": {"ready": True},
                              "targetRef": {"kind": "Pod", "name": name, "namespace": svc.namespace}})
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": svc.name, "namespace": svc.namespace,
                                 "labels": {"kubernetes.io/service-name": svc.name}},
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": "TCP"} for p in ports]})
    for obj in generated:
        if obj.get("kind") == "Service":
            meta = obj["metadata"]
            known.add((meta["namespace"], meta["name"]))
            out.append({**obj, "spec": {**obj["spec"], "clusterIP": next(vip)}})
    for kr in model.keys:
        for f in kr.forks:
            d = f.destination
            if not isinstance(d, HostDestination):
                continue
            parts = d.host.split(".")
            if len(parts) >= 3 and parts[2] == "svc" and (parts[1], parts[0]) not in known:
                svc = model.service_by_id[f.service]
                known.add((parts[1], parts[0]))
                namespaces.add(parts[1])
                out.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": parts[0], "namespace": parts[1]},
                            "spec": {"clusterIP": next(vip), "selector": {"mf-test-service": parts[0]},
                                     "ports": [{"name": p.name or f"port-{p.number}", "port": d.port or p.number,
                                                **({"appProtocol": APP_PROTOCOL[p.protocol]}
                                                   if p.protocol in APP_PROTOCOL else {})}
                                               for p in svc.ports]}})
    out[:0] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in sorted(namespaces)]
    return out


def translate(tmp: Path, objects: list[dict], proxy: str, ports: dict[str, int], admin: int) -> dict:
    """Istio's Envoy configuration for `proxy`, with a listener on 127.0.0.1:ports[t] for each target t
    (`name.namespace:port`: Istio's outbound routing for that service port)."""
    f = tmp / f"inputs-{len(list(tmp.glob('inputs-*')))}.yaml"
    f.write_text("\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects))
    out = tmp / (f.stem + ".bootstrap.json")
    args = [sys.executable, str(TRANSLATE), "--proxy", proxy, "--admin-port", str(admin), "--output", str(out)]
    for p, local in ports.items():
        args += ["--port", f"{p}=127.0.0.1:{local}"]
    r = subprocess.run([*args, str(f)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


class IstioProxy:
    """A real Envoy running Istio's translation; every cluster answered by a backend named after it."""

    def __init__(self, boot: dict, admin: int):
        self.stack = ExitStack()
        for c in boot["staticResources"]["clusters"]:
            if c["name"] == "BlackHoleCluster":
                continue
            b = self.stack.enter_context(Backend(c["name"]))
            for k in ("dnsLookupFamily", "respectDnsTtl", "dnsRefreshRate", "typedDnsResolverConfig", "lbPolicy",
                      "originalDstLbConfig", "dnsJitter"):
                c.pop(k, None)
            c["type"] = "STATIC"
            c["loadAssignment"] = {"clusterName": c["name"], "endpoints": [{"lbEndpoints": [{"endpoint": {
                "address": {"socketAddress": {"address": "127.0.0.1", "portValue": b.port}}}}]}]}
            c.pop("typedExtensionProtocolOptions", None)  # plain HTTP/1.1 to the test backend
        self.envoy = self.stack.enter_context(Envoy(json.dumps(boot), admin, name="istio-translated"))

    def ask(self, port: int, host: str, headers: dict[str, str]) -> str:
        r = http_get(port, host, headers)
        return r.get("name") or f"HTTP {r.get('status')}"

    def close(self) -> None:
        self.stack.close()


def cluster_name(dest: dict, port: int) -> str:
    """What answers a request `istio_eval.route` sends to `dest`: the name of the Istio cluster, or the
    status Envoy answers with when there is none."""
    host = dest["host"]
    if host in (NO_ROUTE, NO_CLUSTER):
        return "HTTP 404" if host == NO_ROUTE else "HTTP 503"
    return f"outbound|{(dest.get('port') or {}).get('number') or port}|{dest.get('subset') or ''}|{host}"


def known_hosts(objects: list[dict]) -> set[str]:
    return {f"{o['metadata']['name']}.{o['metadata']['namespace']}.svc.cluster.local"
            for o in objects if o.get("kind") == "Service"}


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]
