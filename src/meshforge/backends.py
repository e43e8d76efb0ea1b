"""Backends by name: what each can express, the options it takes, and how it renders a `Model`.

Input: a lowered model, a backend name, that backend's options. Output: {relative path: text};
`render` without `-o` joins them into one YAML stream in path order. This table drives
`render --format` (choices, help), the golden tests and the one capability check: a backend that
cannot express part of the model gets an error diagnostic (MF301), so nothing is written, instead of
part of the model being dropped. Emitters are imported lazily: `render --format istio` never loads
the Envoy protobuf modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable

from .diagnostics import Diagnostics, did_you_mean
from .emit.objects import Rendered
from .model import (
    DESTINATION_KINDS,
    EndpointsDestination,
    HostDestination,
    LocalDestination,
    Model,
    SubsetDestination,
    WorkloadDestination,
)
from .names import is_ip
from .xdsapi import DEFAULT_ADMIN_PORT, DEFAULT_EDGE_PORT, DEFAULT_OUTBOUND_PORT, MAX_PORT


@dataclass(frozen=True)
class Option:
    """A backend option; the CLI makes a `--flag` of it."""

    name: str  # keyword the renderer takes
    flag: str
    default: int
    minimum: int
    maximum: int
    help: str
    is_flag: bool = False  # a switch (False unless given) instead of a number


OUTBOUND_PORT = Option("outbound_port", "--outbound-port", DEFAULT_OUTBOUND_PORT, 1, MAX_PORT,
                       "the sidecars' outbound listener port")
EDGE_PORT = Option("edge_port", "--edge-port", DEFAULT_EDGE_PORT, 1, MAX_PORT,
                   "the edge proxy's listener port (with an edge in the Baseline)")
HEADER_ONLY = Option("header_only", "--header-only", False, 0, 1,
                     "match the plain routing-key header only (for implementations without regular-expression header "
                     "matches); keys carried in baggage then need the edge or a plain header", is_flag=True)
ADMIN_PORT = Option("admin_port", "--admin-port", DEFAULT_ADMIN_PORT, 0, MAX_PORT, "the Envoy admin port (0: none)")


@dataclass(frozen=True)
class Unsupported:
    """Why a backend cannot express a destination kind (or those of its destinations `applies` picks), and
    what to do instead."""

    message: str  # "cannot route to ...", with {destination} and {service} filled in
    hint: str
    applies: Callable[[Any, Model, str], bool] | None = None  # (destination, model, service's namespace); None: all
    reads_services: bool = False  # `applies` looks at the mesh's services, not at the fork alone

    def refuses(self, destination, model: Model, namespace: str) -> bool:
        return self.applies is None or self.applies(destination, model, namespace)


@dataclass(frozen=True)
class Backend:
    name: str
    title: str  # in messages: "the Envoy backend cannot ..."
    summary: str
    renderer: Callable[..., list[Rendered]]  # (model, diags, **options) -> files
    destinations: frozenset[type]  # destination kinds it expresses
    cannot: dict[type, Unsupported] = field(default_factory=dict)  # the others, explained
    options: tuple[Option, ...] = ()
    empty: str = "the specs hold nothing it renders"  # why a render can come out empty, for the note that says so

    def render(self, model: Model, diags: Diagnostics, **options: Any) -> list[Rendered]:
        known = {o.name: o.default for o in self.options}
        return self.renderer(model, diags, **{**known, **{k: v for k, v in options.items() if k in known}})


def _istio(model: Model, diags: Diagnostics) -> list[Rendered]:
    from .emit import istio

    return istio.render_files(model, diags)


def _kubernetes(model: Model, diags: Diagnostics) -> list[Rendered]:
    from .emit import kubernetes

    return kubernetes.render_files(model, diags)


def _gateway_api(model: Model, diags: Diagnostics, **options: bool) -> list[Rendered]:
    from .emit import gateway_api

    return gateway_api.render_files(model, diags, **options)


def _xds(model: Model, diags: Diagnostics, **options: int) -> list[Rendered]:
    from .emit.xds.backend import render_xds

    return render_xds(model, diags, **options)


def _envoy_static(model: Model, diags: Diagnostics, **options: int) -> list[Rendered]:
    from .emit.xds.backend import render_static

    return render_static(model, diags, **options)


_ENVOY_SUBSETS = Unsupported(
    "cannot route to label {destination} of {service}: meshforge serves no Kubernetes endpoints",
    "fork to a host (a separate Service) or to static endpoints, or use --format istio, where subsets "
    "become DestinationRule subsets")

# Workload forks reach every backend lowered (lower.workload_forks): as a host fork, plus objects that
# the kubernetes backend renders. Forks to laptops too (lower.local_forks): as a host fork to the tunnel node.
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("istio", "Istio", "Istio VirtualService / DestinationRule / ServiceEntry YAML",
            _istio,
            frozenset({HostDestination, EndpointsDestination, SubsetDestination, WorkloadDestination, LocalDestination}),
            empty="no active sandbox or route group forks a service, no edge is declared and no VirtualService was "
                  "given"),
    Backend("gateway-api", "Gateway API", "Gateway API HTTPRoutes / GRPCRoutes for the mesh (GAMMA: Istio, Linkerd, "
            "Cilium, Kuma)", _gateway_api, frozenset({HostDestination, EndpointsDestination, WorkloadDestination, LocalDestination}),
            {HostDestination: Unsupported(
                "cannot route to {destination} of {service}: backendRefs name Kubernetes Services, and this host "
                "names none",
                "fork to a Service in the cluster (name.namespace.svc.cluster.local), to a workload, or to IP "
                "endpoints (meshforge renders a Service for them)",
                lambda d, model, ns: model.cluster_service(d.host, ns) is None, reads_services=True),
             EndpointsDestination: Unsupported(
                "cannot route to {destination} of {service}: the Service meshforge renders for static endpoints "
                "takes IP addresses (an EndpointSlice), and these include DNS names",
                "give the endpoints as IP addresses, or fork to a host (a Service for the fork) or a workload",
                lambda d, model, ns: not all(is_ip(e.address) for e in d.endpoints)),
             SubsetDestination: Unsupported(
                "cannot route to label {destination} of {service}: backendRefs name whole Services, not subsets",
                "fork to a workload (meshforge renders a Deployment and a Service for it) or to a host")},
            (HEADER_ONLY,), empty="no active sandbox or route group forks a service and no edge is declared"),
    Backend("kubernetes", "Kubernetes", "the Deployments/StatefulSets and Services of workload forks",
            _kubernetes, frozenset(DESTINATION_KINDS),
            empty="it renders the Deployments, StatefulSets and Services of workload forks (to: {workload: ...}), "
                  "and no active sandbox has one"),
    Backend("xds", "Envoy", "the Envoy xDS resources `serve` pushes, per node (JSON mapping, as YAML)",
            _xds,
            frozenset({HostDestination, EndpointsDestination, WorkloadDestination, LocalDestination}), {SubsetDestination: _ENVOY_SUBSETS},
            (OUTBOUND_PORT, EDGE_PORT)),
    Backend("envoy-static", "Envoy", "a static Envoy bootstrap per node that runs without a server",
            _envoy_static,
            frozenset({HostDestination, EndpointsDestination, WorkloadDestination, LocalDestination}), {SubsetDestination: _ENVOY_SUBSETS},
            (OUTBOUND_PORT, ADMIN_PORT, EDGE_PORT)),
)}

for _b in BACKENDS.values():  # every destination kind is either expressed or explained
    assert set(DESTINATION_KINDS) == set(_b.destinations) | set(_b.cannot), _b.name


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise KeyError(f"unknown backend {name!r}" + (f"; {h}" if (h := did_you_mean(name, BACKENDS)) else ""))
    return BACKENDS[name]


def all_options() -> dict[str, Option]:
    """Every backend option by name, once."""
    return {o.name: o for b in BACKENDS.values() for o in b.options}


def check(model: Model, backend: Backend, diags: Diagnostics, keys: Iterable[str] | None = None) -> None:
    """The one place that reports what `backend` cannot express in `model` (MF301): in every routing
    key, or in `keys` only (a caller that checked the rest before and knows they did not change)."""
    routes = model.keys if keys is None else [kr for k in sorted(keys) if (kr := model.key(k)) is not None]
    for kr in routes:
        for fork in kr.forks:
            why = backend.cannot.get(type(fork.destination))
            if why is not None and why.refuses(fork.destination, model, model.service_by_id[fork.service].namespace):
                what = why.message.format(destination=fork.destination.describe(), service=fork.service)
                diags.error("MF301", f"the {backend.title} backend {what}", fork.origin, why.hint)


class Checker:
    """`check` as a stage that keeps what it knows: `update(model, diags)` checks only the routing keys
    the model's change names when the model before it passed whole (the others passed then and are the
    very same objects; after a Baseline edit too, unless a refusal looks at the services), else every key; `verify(model)` checks every key and says what `update` missed."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._token: object | None = None  # the change of the last model that passed whole
        self._found: list[str] = []  # what the last update reported

    def update(self, model: Model, diags: Diagnostics) -> None:
        change = model.change
        sub = Diagnostics()
        keys = None
        if change is not None:  # a key whose forks are as before passes as before, unless the services decide
            keys = change.keys_since(self._token, services=not any(u.reads_services for u in self.backend.cannot.values()))
        check(model, self.backend, sub, keys)
        self._found = [d.to_text() for d in sub.items]
        diags.extend(sub.items)
        self._token = change.token if change is not None and not diags.has_errors else None

    def verify(self, model: Model) -> list[str]:
        sub = Diagnostics()
        check(model, self.backend, sub)
        missed = sorted(set(d.to_text() for d in sub.items) - set(self._found))
        return [f"check: missed {m}" for m in missed]


def render(model: Model, name: str, diags: Diagnostics, **options: Any) -> dict[str, str]:
    """Check, then render: {relative path: text}. Nothing is rendered when the backend cannot express the
    model, or when what it rendered would overwrite something (`unique`)."""
    backend = get(name)
    check(model, backend, diags)
    if diags.has_errors:
        return {}
    out = backend.render(model, diags, **options)
    if diags.has_errors or not unique(out, model, backend, diags):
        return {}
    return {r.path: r.text for r in out}


def unique(files: list[Rendered], model: Model, backend: Backend, diags: Diagnostics) -> bool:
    """No two files with one path or one identity (a backend's bug: an internal error naming both inputs),
    and no generated object with the identity of an input object (applying it would replace that object,
    and a prune delete it): checked before anything is written. False when either was found."""
    by_path: dict[str, Rendered] = {}
    by_identity: dict[tuple, Rendered] = {}
    ok = True
    for r in files:
        for table, key, what in ((by_path, r.path, f"file {r.path}"),
                                 (by_identity, r.identity, f"{r.identity[1]} {r.identity[2]}/{r.identity[3]}"
                                  if r.identity else "")):
            if key is None:
                continue
            first = table.setdefault(key, r)
            if first is not r:
                ok = False
                diags.error("MF309", f"internal error: the {backend.title} backend renders {what} twice, for the input "
                            f"at {first.origin.at()} and for this one; nothing was written", r.origin,
                            "please report it; renaming one of the two sandboxes or services avoids it")
        if r.identity is not None and not r.is_input and r.identity in model.inputs:
            ok = False
            group, kind, ns, name = r.identity
            diags.error("MF308", f"the {kind} {ns}/{name} meshforge renders for this input has the name of an object "
                        "among the inputs: applying it would replace that object, and a prune delete it", r.origin,
                        "rename the sandbox (or the input object); meshforge never takes over an object it did not "
                        "make")
    return ok


def stream(files: dict[str, str]) -> str:
    """One YAML stream; each document opens with a comment naming its file (for Envoy: its node)."""
    return "---\n".join(f"# {k}\n{files[k]}" for k in sorted(files))
