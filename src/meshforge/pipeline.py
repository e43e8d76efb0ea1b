"""The front half of the compiler: paths → `Model`.

Input: paths and the clock. Output: `(Model | None, Diagnostics)`; the model is None whenever
any error was found, so nothing is ever emitted from specs that failed validation.
"""

from __future__ import annotations

from datetime import datetime

from .diagnostics import Diagnostics
from .model import Model
from .resolve import resolve
from .source import Document, load_paths
from .spec.parse import parse_documents


def compile_documents(docs: list[Document], diags: Diagnostics, now: datetime | None = None) -> Model | None:
    decls = parse_documents(docs, diags)
    model = resolve(decls, diags, now)
    return None if diags.has_errors else model


def compile_paths(paths: list[str], now: datetime | None = None) -> tuple[Model | None, Diagnostics]:
    diags = Diagnostics()
    docs = load_paths(list(paths), diags)
    model = compile_documents(docs, diags, now)
    return model, diags
