"""Schema validation: a document → diagnostics that name the field, what is wrong and a hint.

Input: a `Document` of a meshforge kind. Output: diagnostics (MF101-MF104). The JSON Schemas in
`schemas/` are the single source of truth; this module only turns jsonschema's errors into prose.
A document is first checked by the schema compiled to plain checks (`fastcheck`): when that says valid,
jsonschema is not run; anything else (invalid, or a part it cannot tell) is jsonschema's to judge.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
from jsonschema.exceptions import ValidationError

from ..diagnostics import Diagnostics, did_you_mean
from ..source import Document, escape
from .fastcheck import Check, compile_schema

KINDS = {"Baseline": "baseline", "Sandbox": "sandbox", "RouteGroup": "routegroup"}


def schema_dir() -> Path:
    """Schemas ship inside the wheel (meshforge/schemas); an editable checkout reads the repo's schemas/."""
    packaged = resources.files("meshforge") / "schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "schemas"


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    return json.loads((schema_dir() / f"{KINDS[kind]}.schema.json").read_text())


@lru_cache(maxsize=None)
def _full(pattern: str) -> re.Pattern:
    """JSON Schema patterns mean ECMA 262, where `$` is the end of the text; in Python `$` also matches
    before a final newline, so `name: "cart\\n"` would pass. Anchor at the true end instead."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _full(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=None)
def _validator(kind: str):
    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    if cls is not jsonschema.validators.Draft202012Validator:
        raise ValueError(f"{kind}: the schemas are JSON Schema 2020-12 (what fastcheck compiles)")
    strict = jsonschema.validators.extend(cls, {"pattern": _pattern})
    return strict(schema)


def _pointer(path) -> str:
    return "".join(f"/{escape(str(p))}" for p in path)


def _describe_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _leaf_errors(err: ValidationError):
    """For `oneOf`/`anyOf` whose branches all failed deeper, report the branch errors; else the error itself."""
    if err.validator in ("oneOf", "anyOf") and "errorMessage" not in err.schema and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        yield from _leaf_errors(best)
    else:
        yield err


@lru_cache(maxsize=None)
def fast_check(kind: str) -> Check:
    """The kind's schema as plain checks, matching patterns as the validator does (`_full`)."""
    _validator(kind)  # the schema itself checked first
    return compile_schema(load_schema(kind), _full)


MAX_SCHEMA_ERRORS = 100  # listed per document; the rest are counted in one MF105 (a 50,000-key mapping: one line)


class _Budget:
    """The schema errors one document may still list; what is over is counted."""

    def __init__(self, diags: Diagnostics, left: int):
        self.diags, self.left, self.over = diags, left, 0

    def error(self, code: str, message: str, span, hint: str | None = None) -> None:
        if self.left > 0:
            self.left -= 1
            self.diags.error(code, message, span, hint)
        else:
            self.over += 1


def validate_document(doc: Document, diags: Diagnostics) -> bool:
    """Schema-check one meshforge document; every problem becomes a diagnostic (the first MAX_SCHEMA_ERRORS of
    them, and one that counts the rest). True when valid."""
    if fast_check(doc.kind)(doc.data) is True:
        return True
    validator = _validator(doc.kind)
    ok = True
    budget = _Budget(diags, MAX_SCHEMA_ERRORS)
    for top in sorted(validator.iter_errors(doc.data), key=lambda e: (list(map(str, e.absolute_path)), e.validator)):
        for err in _leaf_errors(top):
            ok = False
            _report(doc, err, budget)
    if budget.over:
        diags.error("MF105", f"{budget.over} more schema error{'s' if budget.over != 1 else ''} in this {doc.kind} "
                    f"not listed (the first {MAX_SCHEMA_ERRORS} are)", doc.span(""),
                    "fix the errors listed and validate again")
    return ok


def _report(doc: Document, err: ValidationError, diags: _Budget) -> None:
    ptr = _pointer(err.absolute_path)
    field = ptr or "/"
    v = err.validator
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extras = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        for i, extra in enumerate(extras):
            if diags.left <= 0:  # counted, not looked at: a hostile mapping of many keys costs no hints or spans
                diags.over += len(extras) - i
                break
            child = f"{ptr}/{escape(extra)}"
            hint = did_you_mean(extra, allowed) or ("allowed fields: " + ", ".join(sorted(allowed)) if allowed else None)
            diags.error("MF101", f"unknown field {extra!r}", doc.span(child, key=True), hint)
        return
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
        desc = err.schema.get("properties", {}).get(missing, {}).get("description")
        diags.error("MF102", f"missing required field {missing!r}", doc.span(ptr, key=True),
                    f"add {missing}: ({desc})" if desc else f"add {missing}")
        return
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        hint = "quote it to make it a string" if want == "string" else None
        diags.error("MF103", f"{field} must be {('an ' if want[0] in 'aeiou' else 'a ')}{want}, not {_describe_type(err.instance)}",
                    doc.span(ptr), hint)
        return
    if v == "const":
        diags.error("MF104", f"{field} must be {err.validator_value!r}, not {err.instance!r}", doc.span(ptr))
        return
    if v == "enum":
        hint = did_you_mean(str(err.instance), map(str, err.validator_value)) or \
            "one of: " + ", ".join(map(str, err.validator_value))
        diags.error("MF104", f"{field}: {err.instance!r} is not allowed", doc.span(ptr), hint)
        return
    if v == "pattern":
        desc = err.schema.get("description", "")
        diags.error("MF104", f"{field}: {err.instance!r} is not valid", doc.span(ptr),
                    desc or f"must match {err.validator_value}")
        return
    if v in ("oneOf", "anyOf", "not"):
        msg = err.schema.get("errorMessage") or f"{field} matches none of the allowed forms"
        diags.error("MF104", msg, doc.span(ptr), err.schema.get("description"))
        return
    if v in ("minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"):
        diags.error("MF104", f"{field}: {err.message}", doc.span(ptr), err.schema.get("description"))
        return
    diags.error("MF104", f"{field}: {err.message}", doc.span(ptr))
