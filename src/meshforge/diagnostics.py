"""Diagnostics: spans, coded messages, a collector, and the text / JSON renderers.

Input: problems found by any compiler stage. Output: `file:line:column: error[MFxxx]: ...` text
(or JSON) for people and machines. Every stage collects; nothing raises at the first problem.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Iterable

ERROR = "error"
WARNING = "warning"
NOTE = "note"

# Stable codes. The number is the contract; the wording may improve.
CODES: dict[str, str] = {
    "MF001": "YAML syntax error",
    "MF002": "duplicate mapping key",
    "MF003": "input limit exceeded",
    "MF004": "cannot read input",
    "MF005": "document is not an object",
    "MF006": "YAML feature not allowed",
    "MF007": "unknown meshforge kind or apiVersion",
    "MF008": "file holds no object meshforge reads",
    "MF101": "unknown field",
    "MF102": "missing required field",
    "MF103": "wrong type",
    "MF104": "invalid value",
    "MF105": "more schema errors in a document than are listed",
    "MF201": "unknown service",
    "MF202": "fork of a service without HTTP ports",
    "MF203": "service defined twice",
    "MF204": "service forked twice under one routing key",
    "MF205": "routing key used twice",
    "MF206": "invalid routing key",
    "MF207": "unknown sandbox in route group",
    "MF208": "expired sandbox in route group",
    "MF209": "sandbox expired",
    "MF210": "conflicting routing settings",
    "MF211": "route group selects no sandbox",
    "MF212": "port not on service",
    "MF213": "inferred dependency",
    "MF214": "unknown dependency",
    "MF215": "object defined twice",
    "MF216": "subset cannot be isolated from the baseline",
    "MF217": "VirtualService not bound to the mesh",
    "MF218": "Service selects several workloads",
    "MF219": "forked port declares no protocol",
    "MF220": "workload fork without exactly one baseline workload",
    "MF221": "workload fork names no such container",
    "MF222": "edge declared twice",
    "MF223": "edge host inside the preview domain",
    "MF224": "dependencies unknown: inference incomplete",
    "MF225": "amended protocol not in the cluster's Service",
    "MF226": "forked service has ports that stay on the baseline",
    "MF227": "user VirtualService left alone",
    "MF228": "user gateway VirtualService sends keyed requests to a baseline",
    "MF229": "user VirtualService shares the edge's gateway hosts",
    "MF230": "fork to a laptop without a tunnel node",
    "MF231": "tunnel declared twice",
    "MF232": "previewAuth keys or settings unusable",
    "MF301": "backend cannot express a destination",
    "MF302": "user VirtualService routes may reach subset sandbox pods",
    "MF303": "several user VirtualServices for one host",
    "MF304": "edge cannot remove one baggage member (Istio, Gateway API)",
    "MF305": "edge cannot honour trusted sources (Istio, Gateway API)",
    "MF306": "user route outranks the routing-key rules",
    "MF307": "user route not readable for the precedence check",
    "MF308": "generated object has the name of an input object",
    "MF309": "two generated objects with one name (internal error)",
    "MF310": "a user route already sends key-less requests (no default route added)",
    "MF311": "the tunnel node is configured by serve only (no static bootstrap)",
    "MF312": "preview hosts left out of the Gateway API output: it cannot require a signed link",
    "MF313": "the Istio edge checks signed links without maxTTL, notBefore or the cookie",
    "MF401": "inject: a workload's pods are selected by several Services",
    "MF402": "inject: a workload's pods are selected by no Service",
    "MF403": "inject: workload left alone",
    "MF404": "inject: workload not readable",
}


@dataclass(frozen=True, order=True)
class Span:
    """Where something came from: file, 1-based line and column, and the JSON pointer inside its document."""

    file: str = "<input>"
    line: int = 0
    column: int = 0
    pointer: str = ""

    def at(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: str
    message: str
    span: Span = field(default_factory=Span)
    hint: str | None = None

    def sort_key(self) -> tuple:
        return (self.span.file, self.span.line, self.span.column, self.code, self.message)

    def to_text(self, color: bool = False) -> str:
        severity = f"{self.severity}[{self.code}]"
        at = self.span.at()
        if color:
            severity = f"{_COLORS[self.severity]}{severity}\033[0m"
            at = f"\033[1m{at}\033[0m"
        lines = [f"{at}: {severity}: {self.message}"]
        if self.severity == NOTE:  # notes are one line: informative, never a call to act
            return lines[0]
        if self.span.pointer:
            lines.append(f"  at {self.span.pointer}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "pointer": self.span.pointer,
            "hint": self.hint,
        }


class Diagnostics:
    """Collects diagnostics from every stage; sorted and de-duplicated on output."""

    def __init__(self) -> None:
        self._items: list[Diagnostic] = []

    def add(self, code: str, severity: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self._items.append(Diagnostic(code, severity, message, span or Span(), hint))

    def error(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.add(code, ERROR, message, span, hint)

    def warning(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.add(code, WARNING, message, span, hint)

    def note(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.add(code, NOTE, message, span, hint)

    def extend(self, other: Iterable[Diagnostic]) -> None:
        self._items.extend(other)

    def collected(self) -> list[Diagnostic]:
        """What was reported, in order, unsorted (for replaying it later)."""
        return list(self._items)

    @property
    def items(self) -> list[Diagnostic]:
        seen: set[Diagnostic] = set()
        out = []
        for d in sorted(self._items, key=Diagnostic.sort_key):
            if d not in seen:
                seen.add(d)
                out.append(d)
        return out

    @property
    def has_errors(self) -> bool:
        return any(d.severity == ERROR for d in self._items)

    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == ERROR]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self._items)


_COLORS = {ERROR: "\033[1;31m", WARNING: "\033[1;33m", NOTE: "\033[36m"}


def plural(n: int, word: str, words: str | None = None) -> str:
    """"1 error", "2 errors"."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def render_text(diags: Iterable[Diagnostic], color: bool = False) -> str:
    items = list(diags)
    if not items:
        return ""
    body = "\n".join(d.to_text(color) for d in items)
    n_err = sum(d.severity == ERROR for d in items)
    n_warn = sum(d.severity == WARNING for d in items)
    return f"{body}\n{plural(n_err, 'error')}, {plural(n_warn, 'warning')}\n"


def render_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diags], indent=2, sort_keys=True) + "\n"


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """`did you mean "x"?` for the closest candidate, or None when nothing is close."""
    cands = sorted(set(candidates))
    best = difflib.get_close_matches(word, cands, n=1, cutoff=0.6)
    if not best:
        # "cart" for "cartservice": a prefix is a good guess too.
        pref = [c for c in cands if c.startswith(word) or word.startswith(c)]
        best = pref[:1]
    return f'did you mean "{best[0]}"?' if best else None
