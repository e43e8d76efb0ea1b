"""The front half of the compiler, assembled in one place: paths → load → parse → resolve → lower → `Model`.

Input: paths (or documents) and the clock. Output: `(Model | None, Diagnostics)`; the model is None
whenever any error was found, so nothing is ever emitted from specs that failed validation.
`Workspace` keeps each file's parse result, so a watcher re-reads and re-validates only the files
that changed; told which files changed, it skips listing the tree too, and resolution, lowering and
the compiler then work on the changed sandboxes' routing keys and services alone (`Model.change`).
A one-shot command is a workspace used once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from .diagnostics import Diagnostic, Diagnostics
from .emit import kubernetes
from .lower import Pass, local_forks, lower, workload_forks
from .model import DEFAULT_NAMESPACE, Model
from .resolve import Memo, resolve
from .source import (
    MAX_FILES,
    MAX_NODES_TOTAL,
    MAX_TOTAL_BYTES,
    Document,
    Inputs,
    RunBudget,
    expand_paths,
    parse_text,
    read_file,
)
from .spec.decls import Decls, SandboxDecl, ServiceDecl
from .spec.parse import finish, parse_file

# the lowering passes, in order: the workload forks' objects are built by the Kubernetes backend's builder
PASSES: tuple[Pass, ...] = (workload_forks(kubernetes.fork_objects), local_forks)


def build_model(parts: list[Decls], k8s: list[Document], diags: Diagnostics, now: datetime | None,
                passes: tuple[Pass, ...] = PASSES) -> Model | None:
    """Per-file declarations → the lowered model, or None when anything failed."""
    decls = finish(parts, k8s, diags)
    model = resolve(decls, diags, now)
    return None if diags.has_errors else lower(model, passes)


def compile_documents(docs: list[Document], diags: Diagnostics, now: datetime | None = None) -> Model | None:
    """Documents already parsed (tests, fuzzing) → model."""
    decls, k8s = parse_file(docs, diags)
    return build_model([decls], k8s, diags, now)


def compile_paths(paths: list[str], now: datetime | None = None,
                  namespace: str = DEFAULT_NAMESPACE) -> tuple[Model | None, Diagnostics]:
    return Workspace(list(paths), namespace=namespace).compile(now)


@dataclass
class _FileResult:
    stat: tuple | None
    digest: str
    diagnostics: list[Diagnostic]
    decls: Decls
    k8s: list[Document]
    size: int = 0
    nodes: int = 0

    @property
    def others(self) -> bool:
        """Declares something beside sandboxes and services (lists a change rebuilds from the files that have any)."""
        return any(getattr(self.decls, name) for name in _OTHERS)


class Workspace:
    """The inputs of a process: paths, and what each file last parsed to.

    `compile(now)` lists the files (walk and stat) and re-reads the ones that changed. Given the files
    that changed (`changed`, as inotify names them), it skips the walk: when no changed file holds a
    Kubernetes manifest, before or after (the import reads them all at once), only those files are read and
    the merged declarations are updated in place (sandboxes and services by identity; the few other lists
    rebuilt from the files that have any); resolution then works on what they touch. Anything else (a
    directory created or removed, a Kubernetes manifest, a file named directly, the last compile having
    failed to read its inputs) takes the full way. Both ways give the same model (property-tested)."""

    def __init__(self, paths: list[str], passes: tuple[Pass, ...] = PASSES, namespace: str = DEFAULT_NAMESPACE):
        self.paths = list(paths)
        self.passes = passes
        self.namespace = namespace  # of every input object that names none
        self._files: dict[str, _FileResult] = {}
        self.files_parsed = 0
        self.incremental_compiles = 0
        self._memo = Memo()  # what resolve can reuse from the last compile
        # what the last compile used, when it read every file it listed within the budget (else None)
        self._last: _FullRead | None = None
        self._resolved: _FullRead | None = None  # the inputs the memo last resolved (a change is relative to them)
        self._result: tuple[datetime | None, tuple[Model | None, Diagnostics]] | None = None  # for verify()

    def _load(self, path: str, diags: Diagnostics, force: bool = False) -> _FileResult | None:
        key = path
        try:
            st = os.stat(path)
        except OSError:
            st = None
        stat = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
        cached = self._files.get(key)
        if cached is not None and stat is not None and cached.stat == stat and not force:
            return cached
        fdiags = Diagnostics()
        text = read_file(path, fdiags)
        digest = hashlib.sha256(text.encode()).hexdigest() if text is not None else ""
        if cached is not None and text is not None and cached.digest == digest:
            cached.stat = stat
            return cached
        if text is None:
            self._files.pop(key, None)
            diags.extend(fdiags.items)
            return None
        docs = parse_text(text, key, fdiags)
        decls, k8s = parse_file(docs, fdiags, self.namespace)
        self.files_parsed += 1
        result = _FileResult(stat, digest, fdiags.items, decls, k8s, len(text), sum(d.nodes for d in docs))
        self._files[key] = result
        return result

    def compile(self, now: datetime | None = None,
                changed: Iterable[str] | None = None) -> tuple[Model | None, Diagnostics]:
        """Every input compiled. `changed`: the only files that may differ since the last compile
        (absolute or as the watcher names them; None: unknown, so look at everything)."""
        out = None
        if changed is not None and self._last is not None:
            keys = self._keys_of(changed)
            if keys is not None:
                out = self._compile_change(keys, now)
                if out is not None:
                    self.incremental_compiles += 1
        if out is None:
            out = self._compile_full(now)
        self._result = (now, out)
        return out

    def _compile_full(self, now: datetime | None) -> tuple[Model | None, Diagnostics]:
        diags = Diagnostics()
        files = expand_paths(self.paths, diags)
        complete = not diags.has_errors
        parts: list[Decls] = []
        k8s: list[Document] = []
        results: dict[str, _FileResult] = {}
        budget = RunBudget()
        for f in files:
            r = self._load(f, diags)
            if r is None:
                complete = False
                continue
            if not budget.take(r.size, r.nodes, f, diags):
                complete = False
                break
            results[f] = r
            diags.extend(r.diagnostics)
            parts.append(r.decls)
            k8s.extend(r.k8s)
        for gone in self._files.keys() - results.keys():
            del self._files[gone]
        merged = Diagnostics()
        decls = finish(parts, k8s, merged)
        diags.extend(merged.collected())
        self._last = _FullRead(results, decls, merged.collected(), budget.bytes, budget.nodes, self.inputs()) \
            if complete else None
        return self._model(decls, diags, now), diags

    def inputs(self) -> Inputs:
        """Which paths are inputs, as of now (a symlinked spec directory may have been swapped)."""
        return Inputs(self.paths)

    def _keys_of(self, changed: Iterable[str]) -> set[str] | None:
        """The names `expand_paths` gives the changed files (others are not inputs), or None when a file
        named directly changed: that takes the full way. Directories are not files: a caller that saw one
        come or go passes `changed=None`. Named by the inputs as the last full compile found them (resolving
        the named paths again costs a system call per path component, a tenth of a sandbox file's reload with
        a cold CPU): changed files come from watching those inputs, and when the inputs themselves change (a
        symlinked spec directory swapped) the watcher sees a directory change, which takes the full way."""
        inputs = self._last.inputs
        keys: set[str] = set()
        for path in changed:
            if path in inputs.files:
                return None
            name = inputs.name(path)
            if name is not None:
                keys.add(name)
        return keys

    def verify(self) -> list[str]:
        """The inputs compiled again, at the last compile's clock, by a fresh workspace: how the last
        compile's model and diagnostics differ (empty: not at all). A debugging aid; it costs a full
        compile. When the files are no longer those the last compile read (a change under way: its own
        reload follows), there is nothing to compare: empty too."""
        if self._result is None:
            return []
        now, got = self._result
        fresh = Workspace(self.paths, self.passes, self.namespace)
        want = fresh.compile(now)
        if {p: r.digest for p, r in fresh._files.items()} != {p: r.digest for p, r in self._files.items()}:
            return []
        return _differences(got, want)

    def _compile_change(self, keys: set[str], now: datetime | None) -> tuple[Model | None, Diagnostics] | None:
        """Only `keys` changed: update the declarations they hold; None when that does not apply."""
        last = self._last
        new: dict[str, _FileResult | None] = {}
        for k in sorted(keys):
            if os.path.lexists(k) and not os.path.isdir(k):
                r = self._load(k, Diagnostics(), force=True)  # read again, whatever its stat says
                if r is None:
                    return None
            else:
                r = None
            old = last.files.get(k)
            if (old is not None and old.k8s) or (r is not None and r.k8s):
                return None  # the Kubernetes import reads every manifest at once: the full way
            if r is not old:
                new[k] = r
        size, nodes, count = last.bytes, last.nodes, len(last.files)
        for k, r in new.items():
            old = last.files.get(k)
            if old is not None:
                size, nodes, count = size - old.size, nodes - old.nodes, count - 1
            if r is not None:
                size, nodes, count = size + r.size, nodes + r.nodes, count + 1
        if size > MAX_TOTAL_BYTES or nodes > MAX_NODES_TOTAL or count > MAX_FILES:
            return None  # the full way reports it
        sandboxes, services = last.sandboxes, last.services
        removed, added = [], []
        services_changed = others_changed = False
        for k, r in new.items():
            old = last.files.get(k)
            if old is not None:
                for sd in old.decls.sandboxes:
                    del sandboxes[id(sd)]
                    removed.append(sd)
                for d in old.decls.services:
                    del services[id(d)]
                    services_changed = True
                others_changed |= old.others
            if r is None:
                del last.files[k]
                self._files.pop(k, None)
                last.others.pop(k, None)
            else:
                last.files[k] = r
                for sd in r.decls.sandboxes:
                    sandboxes[id(sd)] = sd
                    added.append(sd)
                for d in r.decls.services:
                    services[id(d)] = d
                    services_changed = True
                if r.others:
                    last.others[k] = r.decls
                    others_changed = True
                else:
                    last.others.pop(k, None)
            last.noisy.pop(k, None)
            if r is not None and r.diagnostics:
                last.noisy[k] = r.diagnostics
        last.bytes, last.nodes = size, nodes
        if new:
            parts = {"sandboxes": list(sandboxes.values())}
            if services_changed:
                parts["services"] = list(services.values())
            if others_changed:
                for name in _OTHERS:
                    parts[name] = [x for decls in last.others.values() for x in getattr(decls, name)]
            last.decls = replace(last.decls, **parts)
        diags = Diagnostics()
        for items in last.noisy.values():
            diags.extend(items)
        diags.extend(last.merged)
        return self._model(last.decls, diags, now, (removed, added)), diags

    def _model(self, decls: Decls, diags: Diagnostics, now: datetime | None, change=None) -> Model | None:
        try:
            model = resolve(decls, diags, now, self._memo, change if self._resolved is self._last else None)
        except BaseException:  # whatever state it left is not to be built on: start afresh next time
            self._last, self._resolved, self._memo = None, None, Memo()
            raise
        self._resolved = self._last
        return None if diags.has_errors else lower(model, self.passes)


def _differences(got: tuple[Model | None, Diagnostics], want: tuple[Model | None, Diagnostics]) -> list[str]:
    out = []
    a, b = [d.to_text() for d in got[1].items], [d.to_text() for d in want[1].items]
    if a != b:
        out.append(f"workspace: diagnostics differ: {sorted(set(a) ^ set(b))[:5] or 'in order'}")
    if (got[0] is None) != (want[0] is None):
        out.append(f"workspace: a model {'only incrementally' if got[0] is not None else 'only from scratch'}")
    elif got[0] is not None and got[0] != want[0]:
        fields = [f for f in ("routing", "services", "keys", "sandboxes", "user_objects", "generated", "edge")
                  if getattr(got[0], f) != getattr(want[0], f)]
        out.append(f"workspace: the models differ in {', '.join(fields)}")
    return out


@dataclass
class _FullRead:
    """What a compile that read all of its inputs used: the next change starts from it."""

    files: dict[str, _FileResult]  # every file listed, in order
    decls: Decls  # all of them, merged (`finish`)
    merged: list[Diagnostic]  # what merging reported (the Kubernetes import)
    bytes: int
    nodes: int
    inputs: Inputs  # which paths were inputs then: how a changed file is named (`Workspace._keys_of`)
    noisy: dict[str, list[Diagnostic]] = field(default_factory=dict)  # file -> its diagnostics, when it has any
    sandboxes: dict[int, SandboxDecl] = field(default_factory=dict)  # id -> every sandbox declaration
    services: dict[int, ServiceDecl] = field(default_factory=dict)  # id -> every service declaration (imported too)
    others: dict[str, Decls] = field(default_factory=dict)  # file -> its declarations, when it has `_OTHERS`

    def __post_init__(self) -> None:
        self.noisy = {k: r.diagnostics for k, r in self.files.items() if r.diagnostics}
        self.sandboxes = {id(sd): sd for sd in self.decls.sandboxes}
        self.services = {id(d): d for d in self.decls.services}
        self.others = {k: r.decls for k, r in self.files.items() if r.others}


# what a file may declare beside sandboxes and services: a change rebuilds these lists from the files that have any
_OTHERS = ("route_groups", "settings", "user_objects", "edges", "tunnels", "objects")
