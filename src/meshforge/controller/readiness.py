"""Which forks can take traffic, from the cluster's EndpointSlices; which routing keys may go live.

Input: EndpointSlices (as the API server has them), the lowered model (workload forks are host forks
to the fork's Service by now), and which keys were live before. Output: per routing key whether every
fork it names is ready and, where not, why; the model with only the live keys (`gate`); and for the
Envoy backend the model with Services' and forks' endpoints bound from the slices (`bind_endpoints`),
which the xDS compiler serves as EDS.

A fork is ready when its destination has a ready endpoint: a host that names a Service of the cluster
(`name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`) needs one in that Service's EndpointSlices; explicit
endpoints and hosts outside the cluster cannot be observed and count as ready; a label subset of the
baseline Service counts as ready (pods' labels are not watched). A key goes live only when every fork is
ready; afterwards a fork that loses its endpoints either takes the key's routes back to the baseline
(`onUnready: Baseline`, the default) or keeps them (`onUnready: KeepRouting`: requests see the fork's
failure instead of silently reaching the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..model import Endpoint, EndpointsDestination, HostDestination, KeyRoutes, Model, Service

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Ready:
    ok: bool
    why: str = ""  # when not: what is missing, for the status


class Endpoints:
    """Ready endpoints per Service, from its EndpointSlices."""

    def __init__(self, slices: list[dict]):
        self.by_service: dict[tuple[str, str], list[tuple[str, dict[str, int]]]] = {}
        for s in slices:
            meta = s.get("metadata") or {}
            svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if not svc:
                continue
            ports = {str(p.get("name") or ""): int(p["port"]) for p in s.get("ports") or [] if p.get("port")}
            for e in s.get("endpoints") or []:
                cond = e.get("conditions") or {}
                if cond.get("ready") is False or cond.get("terminating") is True:
                    continue
                for a in e.get("addresses") or []:
                    self.by_service.setdefault((str(meta.get("namespace", "")), svc), []).append((a, ports))
        for v in self.by_service.values():
            v.sort(key=lambda x: (x[0], sorted(x[1].items())))

    def ready(self, namespace: str, name: str) -> bool:
        return bool(self.by_service.get((namespace, name)))

    def of(self, namespace: str, name: str, port_name: str | None, port: int) -> tuple[Endpoint, ...]:
        """The ready endpoints for one Service port (the slice port named as the Service port is)."""
        out = []
        for address, ports in self.by_service.get((namespace, name), ()):
            target = ports.get(port_name or "") if ports else None
            if target is None and len(ports) == 1:
                target = next(iter(ports.values()))
            out.append(Endpoint(address, target or port))
        return tuple(dict.fromkeys(out))


def cluster_service(host: str, services: set[tuple[str, str]], domain: str) -> tuple[str, str] | None:
    """(namespace, name) of the cluster Service a host names, if it names one."""
    parts = host.rstrip(".").lower().split(".")
    if len(parts) >= 2:
        rest = ".".join(parts[2:])
        if rest in ("", "svc", f"svc.{domain}") and (parts[1], parts[0]) in services:
            return parts[1], parts[0]
    return None


def fork_ready(model: Model, kr: KeyRoutes, eps: Endpoints, services: set[tuple[str, str]]) -> Ready:
    missing = []
    for f in kr.forks:
        if isinstance(f.destination, HostDestination):
            svc = model.service_by_id.get(f.service)
            hit = cluster_service(f.destination.host, services, svc.cluster_domain if svc else "cluster.local")
            if hit is not None and not eps.ready(*hit):
                missing.append(f"Service {hit[1]}.{hit[0]} (the fork of {f.service}) has no ready endpoints")
    return Ready(not missing, "; ".join(missing))


def gate(model: Model, live: set[str]) -> Model:
    """The model with only the routing keys in `live`: the others' requests reach the baseline."""
    return replace(model, keys=tuple(kr for kr in model.keys if kr.key in live), change=None)


def bind_endpoints(model: Model, eps: Endpoints, services: set[tuple[str, str]]) -> Model:
    """Services of the cluster take their endpoints from EndpointSlices, and host forks to a cluster
    Service become endpoint forks: the Envoy backend serves them as EDS, as a sidecar outside the
    cluster's DNS needs."""
    def bound(svc: Service) -> Service:
        if svc.endpoints or (svc.namespace, svc.name) not in services:
            return svc
        port = (svc.routable_ports or svc.ports or (None,))[0]
        if port is None:
            return svc
        return replace(svc, endpoints=eps.of(svc.namespace, svc.name, port.name, port.number))

    def fork(f):
        if isinstance(f.destination, HostDestination):
            svc = model.service_by_id.get(f.service)
            hit = cluster_service(f.destination.host, services, svc.cluster_domain if svc else "cluster.local")
            if hit is not None and svc is not None:
                port = next((p for p in svc.ports if p.number == (f.destination.port or 0)), None) or \
                    (svc.routable_ports or svc.ports)[0]
                found = eps.of(hit[0], hit[1], port.name, f.destination.port or port.number)
                if found:
                    return replace(f, destination=EndpointsDestination(found))
        return f

    keys = tuple(replace(kr, forks=tuple(map(fork, kr.forks))) for kr in model.keys)
    return replace(model, services=tuple(map(bound, model.services)), keys=keys, change=None)
