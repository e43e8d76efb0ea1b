"""The front half of the compiler, assembled in one place: paths → load → parse → resolve → lower → `Model`.

Input: paths (or documents) and the clock. Output: `(Model | None, Diagnostics)`; the model is None
whenever any error was found, so nothing is ever emitted from specs that failed validation.
`Workspace` keeps each file's parse result, so a watcher re-reads and re-validates only the files
that changed; resolution (cheap: ~20 ms for 1,000 services and 1,000 sandboxes) runs on the whole.
A one-shot command is a workspace used once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime

from .diagnostics import Diagnostic, Diagnostics
from .lower import PASSES, Pass, lower
from .model import Model
from .resolve import Memo, resolve
from .source import Document, RunBudget, expand_paths, parse_text, read_file
from .spec.decls import Decls
from .spec.parse import finish, parse_file


def build_model(parts: list[Decls], k8s: list[Document], diags: Diagnostics, now: datetime | None,
                passes: tuple[Pass, ...] = PASSES, memo: Memo | None = None) -> Model | None:
    """Per-file declarations → the lowered model, or None when anything failed."""
    decls = finish(parts, k8s, diags)
    model = resolve(decls, diags, now, memo)
    return None if diags.has_errors else lower(model, passes)


def compile_documents(docs: list[Document], diags: Diagnostics, now: datetime | None = None) -> Model | None:
    """Documents already parsed (tests, fuzzing) → model."""
    decls, k8s = parse_file(docs, diags)
    return build_model([decls], k8s, diags, now)


def compile_paths(paths: list[str], now: datetime | None = None) -> tuple[Model | None, Diagnostics]:
    return Workspace(list(paths)).compile(now)


@dataclass
class _FileResult:
    stat: tuple | None
    digest: str
    diagnostics: list[Diagnostic]
    decls: Decls
    k8s: list[Document]
    size: int = 0
    nodes: int = 0


class Workspace:
    """The inputs of a process: paths, and what each file last parsed to."""

    def __init__(self, paths: list[str], passes: tuple[Pass, ...] = PASSES):
        self.paths = list(paths)
        self.passes = passes
        self._files: dict[str, _FileResult] = {}
        self.files_parsed = 0
        self._memo = Memo()  # what resolve can reuse from the last compile

    def _load(self, path: str, diags: Diagnostics) -> _FileResult | None:
        key = path
        try:
            st = os.stat(path)
        except OSError:
            st = None
        stat = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
        cached = self._files.get(key)
        if cached is not None and stat is not None and cached.stat == stat:
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
        decls, k8s = parse_file(docs, fdiags)
        self.files_parsed += 1
        result = _FileResult(stat, digest, fdiags.items, decls, k8s, len(text), sum(d.nodes for d in docs))
        self._files[key] = result
        return result

    def compile(self, now: datetime | None = None) -> tuple[Model | None, Diagnostics]:
        diags = Diagnostics()
        files = expand_paths(self.paths, diags)
        parts: list[Decls] = []
        k8s: list[Document] = []
        seen = set()
        budget = RunBudget()
        for f in files:
            r = self._load(f, diags)
            if r is None:
                continue
            if not budget.take(r.size, r.nodes, f, diags):
                break
            seen.add(f)
            diags.extend(r.diagnostics)
            parts.append(r.decls)
            k8s.extend(r.k8s)
        for gone in set(self._files) - seen:
            del self._files[gone]
        return build_model(parts, k8s, diags, now, self.passes, self._memo), diags
