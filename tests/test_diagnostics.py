"""diagnostics: rendering, ordering, hints, and the code table kept in sync with the code."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import meshforge
from meshforge.diagnostics import CODES, Diagnostics, Span, did_you_mean, render_json, render_text

PACKAGE = Path(meshforge.__file__).resolve().parent


def emitted_codes() -> dict[str, list[str]]:
    """code -> places that emit it: every call whose first argument is a literal MFxxx code."""
    out: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str) and re.fullmatch(r"MF\d{3}", node.args[0].value):
                out.setdefault(node.args[0].value, []).append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return out


def test_every_emitted_code_is_listed_with_its_meaning():
    unlisted = {c: where for c, where in emitted_codes().items() if c not in CODES}
    assert unlisted == {}


def test_every_listed_code_can_be_emitted():
    assert sorted(set(CODES) - set(emitted_codes())) == []


def test_one_meaning_per_code():
    assert len(set(CODES.values())) == len(CODES)
    assert all(re.fullmatch(r"MF\d{3}", c) for c in CODES)


def test_text_rendering_names_place_field_and_hint():
    d = Diagnostics()
    d.error("MF201", "unknown service 'cartservce'", Span("s.yaml", 8, 14, "/spec/forks/0/service"),
            'did you mean "cartservice"?')
    d.warning("MF209", "sandbox x expired", Span("x.yaml", 2, 3, "/spec/expiresAt"), "extend it")
    d.note("MF213", "a depends on b", Span("k.yaml", 1, 1, "/x"), "never shown: notes are one line")
    text = render_text(d.items)
    assert text.splitlines() == [
        "k.yaml:1:1: note[MF213]: a depends on b",
        "s.yaml:8:14: error[MF201]: unknown service 'cartservce'",
        "  at /spec/forks/0/service",
        '  hint: did you mean "cartservice"?',
        "x.yaml:2:3: warning[MF209]: sandbox x expired",
        "  at /spec/expiresAt",
        "  hint: extend it",
        "1 error, 1 warning",
    ]
    data = json.loads(render_json(d.items))
    assert data[1] == {"code": "MF201", "severity": "error", "message": "unknown service 'cartservce'",
                       "file": "s.yaml", "line": 8, "column": 14, "pointer": "/spec/forks/0/service",
                       "hint": 'did you mean "cartservice"?'}


def test_duplicates_collapse_and_order_is_by_place():
    d = Diagnostics()
    for _ in range(2):
        d.error("MF201", "b", Span("b.yaml", 2, 1))
    d.error("MF201", "a", Span("a.yaml", 9, 1))
    assert [(x.span.file, x.message) for x in d.items] == [("a.yaml", "a"), ("b.yaml", "b")]
    assert d.has_errors and len(d.errors()) == 2
    assert render_text([]) == ""


def test_did_you_mean():
    assert did_you_mean("cartservce", ["cartservice", "checkout"]) == 'did you mean "cartservice"?'
    assert did_you_mean("cart", ["cartservice"]) == 'did you mean "cartservice"?'  # a prefix
    assert did_you_mean("zzz", ["cartservice"]) is None
    assert Span("f.yaml").at() == "f.yaml" and Span("f.yaml", 3, 4).at() == "f.yaml:3:4"
