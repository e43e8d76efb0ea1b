"""Lowering: the resolved `Model` → the model the backends render, through a tuple of passes.

Input: a model from `resolve`. Output: a model whose destinations are all kinds the emitters know.
Each pass is a pure `Model -> Model` function (sqlglot's shape); they run in order. A destination
kind that only some stage understands lowers here to kinds every backend knows, plus the objects to
render, so emitters never see it:

- `workload_forks`: a fork of the baseline workload is bound to the names of its copy of that Deployment or
  StatefulSet and of a Service selecting only the copy's pods (`WorkloadForkBinding`); the fork itself becomes
  a host fork to that Service. The objects are built by the builder the pass is made with (the pipeline's is
  `emit.kubernetes.fork_objects`) into `Model.generated`. Expired sandboxes get no objects, so a GitOps prune
  removes them.
- `local_forks`: a fork to a laptop becomes a host fork to the tunnel node, listed in `Model.local_forks`.

The passes come from the pipeline (`pipeline.PASSES`), which assembles the stages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .model import (
    Fork,
    HostDestination,
    KeyRoutes,
    LocalDestination,
    LocalFork,
    Model,
    Sandbox,
    Service,
    UserObject,
    WorkloadDestination,
    WorkloadForkBinding,
    tunnel_node,
)
from .names import derived_name

Pass = Callable[[Model], Model]

ForkBuilder = Callable[[WorkloadForkBinding], tuple[UserObject, ...]]


def fork_name(base: str, sandbox: str) -> str:
    """A workload fork's object name (`names.derived_name`): stable, at most 63 characters, and never one
    that another sandbox's objects or the baseline's could have."""
    return derived_name(base, sandbox)


def _selector_key(service: dict) -> tuple[str, str] | None:
    selector = (service.get("spec") or {}).get("selector") or {}
    if not isinstance(selector, dict) or not selector:
        return None
    key = sorted(selector)[0]
    return key, str(selector[key])


def _binding(fork: Fork, dest: WorkloadDestination, svc: Service) -> WorkloadForkBinding:
    """The names a workload fork's objects take: the workload's and the Service's derived from the baseline's
    (`fork_name`), the pods selected by the baseline Service's first selector label, renamed the same way."""
    key, value = _selector_key(dest.service.body) or ("app", dest.workload.name)
    return WorkloadForkBinding(fork.sandbox, dest, svc, fork_name(dest.workload.name, fork.sandbox),
                               fork_name(dest.service.name, fork.sandbox), (key, fork_name(value, fork.sandbox)),
                               fork.origin)


def workload_forks(build: ForkBuilder) -> Pass:
    """The pass that binds each workload fork (`_binding`) and has `build` make its objects (the pipeline
    passes `emit.kubernetes.fork_objects`: lowering knows no backend)."""

    def lower_workload_forks(model: Model) -> Model:
        return _workload_forks(model, build)

    return lower_workload_forks


def _workload_forks(model: Model, build: ForkBuilder) -> Model:
    rev = model.change  # when resolution says which sandboxes have workload forks, look at those only
    candidates = model.sandboxes if rev is None else [model.sandbox(n) for n in sorted(rev.workload_sandboxes)]
    hosts: dict[tuple[str, str], HostDestination] = {}
    generated: list[UserObject] = []
    for sb in candidates:
        for f in sb.forks:
            if isinstance(f.destination, WorkloadDestination) and f.destination.workload is not None:
                binding = _binding(f, f.destination, model.service_by_id[f.service])
                hosts[(sb.name, f.service)] = HostDestination(binding.host)
                if not sb.expired:
                    generated.extend(build(binding))
    if not hosts:
        return model

    def lowered(f: Fork) -> Fork:
        h = hosts.get((f.sandbox, f.service))
        return replace(f, destination=h) if h is not None and isinstance(f.destination, WorkloadDestination) else f

    def lower_key(k: KeyRoutes) -> KeyRoutes:
        return replace(k, forks=tuple(map(lowered, k.forks)))

    def lower_sandbox(sb: Sandbox) -> Sandbox:
        return replace(sb, forks=tuple(map(lowered, sb.forks)))

    if rev is None:
        keys = tuple(map(lower_key, model.keys))
        sandboxes = tuple(map(lower_sandbox, model.sandboxes))
    else:  # only the keys and sandboxes that can hold a workload fork are rebuilt; the rest are kept as they are
        keys_list, sandbox_list = list(model.keys), list(model.sandboxes)
        for name in sorted({sb.key for sb in candidates} | rev.group_keys):
            i = model.key_index(name)
            if i is not None:
                keys_list[i] = lower_key(keys_list[i])
        for sb in candidates:
            sandbox_list[model.sandbox_index(sb.name)] = lower_sandbox(sb)
        keys, sandboxes = tuple(keys_list), tuple(sandbox_list)
    generated.sort(key=lambda o: (o.namespace, o.kind, o.name))
    return replace(model, keys=keys, sandboxes=sandboxes, generated=model.generated + tuple(generated))


def local_forks(model: Model) -> Model:
    """Forks to laptops become host forks to the tunnel node (every backend routes them as it routes a fork to
    a Service), and `model.local_forks` lists them for the tunnel node's own configuration. Looks at the
    sandboxes with such a fork (and the route groups' keys, which may hold them) only."""
    rev = model.change
    if model.tunnel is None:
        return model  # resolution refused every fork to a laptop (MF230)
    candidates = [sb for sb in (model.sandboxes if rev is None else
                                [model.sandbox(n) for n in sorted(rev.local_sandboxes)])
                  if sb is not None and any(isinstance(f.destination, LocalDestination) for f in sb.forks)]
    group_keys = frozenset(k.key for k in model.keys if k.owner_kind == "RouteGroup") if rev is None \
        else rev.group_keys
    if not candidates:
        return model
    tunnel = HostDestination(model.tunnel.host, model.tunnel.port)
    found: list[LocalFork] = []

    def lowered(f: Fork) -> Fork:
        return replace(f, destination=tunnel) if isinstance(f.destination, LocalDestination) else f

    keys_list, sandbox_list = list(model.keys), list(model.sandboxes)
    for name in sorted({sb.key for sb in candidates} | group_keys):
        i = model.key_index(name)
        if i is None:
            continue
        k = keys_list[i]
        local = [f for f in k.forks if isinstance(f.destination, LocalDestination)]
        if local:
            found.extend(LocalFork(k.key, f.service, f.destination.owner, tunnel_node(k.key, f.service),
                                   f.destination.otherwise) for f in local)
            keys_list[i] = replace(k, forks=tuple(map(lowered, k.forks)))
    for sb in candidates:
        sandbox_list[model.sandbox_index(sb.name)] = replace(sb, forks=tuple(map(lowered, sb.forks)))
    found.sort(key=lambda f: (f.key, f.service))
    return replace(model, keys=tuple(keys_list), sandboxes=tuple(sandbox_list), local_forks=tuple(found))


def lower(model: Model, passes: tuple[Pass, ...]) -> Model:
    for p in passes:
        model = p(model)
    return model
