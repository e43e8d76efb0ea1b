"""A JSON Schema compiled to plain Python checks: the fast way to say a spec document is valid.

Input: a schema of `schemas/` (JSON Schema 2020-12). Output: `compile_schema(schema)` → check(instance) →
True (valid), False (invalid) or None (this check cannot tell). `spec.schema` takes True as final and sends
anything else to jsonschema, which stays the judge of invalid documents and the source of their messages.
So what matters is that True and False mean exactly what jsonschema (with `spec.schema`'s anchored
`pattern`) would say; a keyword, a value or an instance this module does not know gives None, never a guess.
Why: jsonschema walks a document through generic per-keyword calls (validator objects evolved per
subschema, reference lookups): for a sandbox file read while serve runs, that is a third of the reload.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "bool | None"]

# keywords that assert nothing (annotations), as jsonschema treats them: no format_checker is given, so
# `format` is an annotation too (not used by the schemas; kept out to stay exact should one be added)
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "errorMessage", "default",
                          "examples", "deprecated", "readOnly", "writeOnly"})
_PLAIN = (dict, list, str, int, float, bool, type(None))  # what YAML's safe loading gives for spec files


class NotCompiled(Exception):
    """A schema keyword or value this module does not compile: the check of that part says None."""


def _unknown(_instance) -> None:
    return None


def _valid(_instance) -> bool:
    return True


def _invalid(_instance) -> bool:
    return False


def _is_type(name: str) -> Callable[[Any], bool]:
    """jsonschema's Draft 2020-12 type checker, for plain data: bool is no number; 1.0 is an integer."""
    if name == "object":
        return lambda v: isinstance(v, dict)
    if name == "array":
        return lambda v: isinstance(v, list)
    if name == "string":
        return lambda v: isinstance(v, str)
    if name == "boolean":
        return lambda v: isinstance(v, bool)
    if name == "null":
        return lambda v: v is None
    if name == "integer":
        return lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if name == "number":
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    raise NotCompiled(f"type {name!r}")


def _all(checks: list[Check]) -> Check:
    """A conjunction, three-valued: False if any says False, else None if any cannot tell, else True.
    The same loop is written out in `properties`, `additionalProperties` and `_all_of`: these run for every
    node of every document, and one helper taking a generator of verdicts made the check 50 % slower
    (a sandbox document 16 -> 25 us, a 100-service Baseline 0.86 -> 1.35 ms)."""
    if not checks:
        return _valid
    if len(checks) == 1:
        return checks[0]

    def check(v):
        verdict = True
        for c in checks:
            r = c(v)
            if r is False:
                return False
            if r is None:
                verdict = None
        return verdict
    return check


class _SchemaCompiler:
    def __init__(self, root: dict, pattern: Callable[[str], Any]):
        self.root = root
        self.pattern = pattern  # pattern -> compiled regular expression, as spec.schema matches them
        self.refs: dict[str, Check] = {}

    def compile(self, schema) -> Check:
        try:
            return self._schema(schema)
        except NotCompiled:
            return _unknown

    def _ref(self, ref: str) -> Check:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/") or "/" in ref[len("#/$defs/"):]:
            raise NotCompiled(f"$ref {ref!r}")
        name = ref[len("#/$defs/"):]
        defs = self.root.get("$defs")
        if not isinstance(defs, dict) or name not in defs or "~" in name or "%" in name:
            raise NotCompiled(f"$ref {ref!r}")
        compiled = self.refs.get(ref)
        if compiled is None:
            holder: list[Check] = []
            self.refs[ref] = lambda v: holder[0](v)  # a recursive reference finds itself while compiled
            holder.append(self.compile(defs[name]))
            compiled = self.refs[ref] = holder[0]
        return compiled

    def _schema(self, schema) -> Check:
        if schema is True:
            return _valid
        if schema is False:
            return _invalid
        if not isinstance(schema, dict):
            raise NotCompiled("a schema that is neither an object nor a boolean")
        checks: list[Check] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            build = _KEYWORDS.get(keyword)
            if build is None:
                raise NotCompiled(f"keyword {keyword!r}")
            checks.append(build(self, value, schema))
        return _all(checks)

    # --- keywords, each as jsonschema's Draft 2020-12 implementation asserts it ---

    def _kw_ref(self, ref, _schema) -> Check:
        return self._ref(ref)

    def _kw_type(self, value, _schema) -> Check:
        names = value if isinstance(value, list) else [value]
        tests = [_is_type(n) for n in names]
        if len(tests) == 1:
            test = tests[0]
            return lambda v: test(v) if isinstance(v, _PLAIN) else None
        return lambda v: any(t(v) for t in tests) if isinstance(v, _PLAIN) else None

    def _kw_const(self, value, _schema) -> Check:
        if not isinstance(value, str):
            raise NotCompiled("const of a non-string")  # jsonschema's equality keeps 1 and True apart
        return lambda v: isinstance(v, str) and v == value

    def _kw_enum(self, value, _schema) -> Check:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise NotCompiled("enum of non-strings")
        allowed = frozenset(value)
        return lambda v: isinstance(v, str) and v in allowed

    def _kw_pattern(self, value, _schema) -> Check:
        search = self.pattern(value).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    @staticmethod
    def _count(n) -> int:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise NotCompiled("a count that is not a non-negative integer")
        return n

    @staticmethod
    def _number(n):
        if not isinstance(n, int | float) or isinstance(n, bool):
            raise NotCompiled("a bound that is not a number")
        return n

    def _kw_minimum(self, n, _schema) -> Check:
        n = self._number(n)
        return lambda v: not isinstance(v, int | float) or isinstance(v, bool) or not v < n

    def _kw_maximum(self, n, _schema) -> Check:
        n = self._number(n)
        return lambda v: not isinstance(v, int | float) or isinstance(v, bool) or not v > n

    def _kw_uniqueItems(self, value, _schema) -> Check:
        if value is not True:
            return _valid if value is False else _unknown

        def check(v):
            if not isinstance(v, list):
                return True
            if all(isinstance(x, str) for x in v):
                return len(set(v)) == len(v)
            return None  # jsonschema's equality (1 == 1.0, 1 != True, nested values): not redone here
        return check

    def _kw_required(self, names, _schema) -> Check:
        if not isinstance(names, list):
            raise NotCompiled("required that is not a list")
        if len(names) == 1:
            name = names[0]
            return lambda v: not isinstance(v, dict) or name in v
        wanted = frozenset(names)
        if not all(isinstance(n, str) for n in names):
            raise NotCompiled("required names that are not strings")
        return lambda v: not isinstance(v, dict) or v.keys() >= wanted

    def _kw_properties(self, props, _schema) -> Check:
        if not isinstance(props, dict):
            raise NotCompiled("properties that is not an object")
        compiled = [(name, self.compile(sub)) for name, sub in props.items()]

        def check(v):
            if not isinstance(v, dict):
                return True
            verdict = True
            for name, c in compiled:
                if name in v:
                    r = c(v[name])
                    if r is False:
                        return False
                    if r is None:
                        verdict = None
            return verdict
        return check

    def _kw_additionalProperties(self, sub, schema) -> Check:
        if "patternProperties" in schema:
            raise NotCompiled("additionalProperties beside patternProperties")
        known = frozenset(schema.get("properties", {}))
        if sub is False:
            return lambda v: not isinstance(v, dict) or v.keys() <= known
        each = self.compile(sub)

        def check(v):
            if not isinstance(v, dict):
                return True
            verdict = True
            for name, value in v.items():
                if name not in known:
                    r = each(value)
                    if r is False:
                        return False
                    if r is None:
                        verdict = None
            return verdict
        return check

    def _kw_propertyNames(self, sub, _schema) -> Check:
        each = self.compile(sub)
        return lambda v: True if not isinstance(v, dict) else _all_of(each, v.keys())

    def _kw_items(self, sub, schema) -> Check:
        if "prefixItems" in schema:
            raise NotCompiled("items beside prefixItems")
        each = self.compile(sub)
        return lambda v: True if not isinstance(v, list) else _all_of(each, v)

    def _kw_not(self, sub, _schema) -> Check:
        inner = self.compile(sub)

        def check(v):
            r = inner(v)
            return None if r is None else not r
        return _by_keys(check) if _reads_keys_only(sub) else check

    def _kw_allOf(self, subs, _schema) -> Check:
        return _all([self.compile(s) for s in self._list(subs)])

    def _kw_anyOf(self, subs, _schema) -> Check:
        branches = [self.compile(s) for s in self._list(subs)]

        def check(v):
            verdict = False
            for b in branches:
                r = b(v)
                if r is True:
                    return True
                if r is None:
                    verdict = None
            return verdict
        return _by_keys(check) if all(map(_reads_keys_only, subs)) else check

    def _kw_oneOf(self, subs, _schema) -> Check:
        branches = [self.compile(s) for s in self._list(subs)]

        def check(v):
            results = [b(v) for b in branches]
            if None in results:
                return None
            return results.count(True) == 1
        return _by_keys(check) if all(map(_reads_keys_only, subs)) else check

    @staticmethod
    def _list(subs) -> list:
        if not isinstance(subs, list) or not subs:
            raise NotCompiled("a list of subschemas that is not a non-empty list")
        return subs


_KEYS_ONLY = frozenset({"required", "not", "anyOf", "oneOf", "allOf"})


def _reads_keys_only(schema) -> bool:
    """Whether a schema's verdict on an object depends on its set of keys alone (and on nothing else of
    anything that is not an object): required, combined with not/anyOf/oneOf/allOf. The "exactly one of
    host, endpoints, ..." forms are such; for them a verdict is remembered by the key set."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword not in _KEYS_ONLY:
            return False
        if keyword == "not" and not _reads_keys_only(value):
            return False
        if keyword in ("anyOf", "oneOf", "allOf") and not (isinstance(value, list) and
                                                           all(map(_reads_keys_only, value))):
            return False
    return True


_BY_KEYS_MAX = 1024  # key sets remembered per combinator, and ...
_BY_KEYS_SIZE = 16  # ... keys in one at most (the forms they are for have a handful; a hostile file's 100,000
# keys are checked, not remembered)


def _by_keys(check: Check) -> Check:
    """`check` for a schema that reads only an object's keys (`_reads_keys_only`): remembered per key set;
    anything that is not an object gets one verdict, computed once."""
    seen: dict[frozenset, bool | None] = {}
    other: list = []

    def remembered(v):
        if not isinstance(v, dict):
            if not other:
                other.append(check(v))
            return other[0]
        if len(v) > _BY_KEYS_SIZE:
            return check(v)
        keys = frozenset(v)
        r = seen.get(keys, seen)
        if r is seen:
            r = check(v)
            if len(seen) < _BY_KEYS_MAX:
                seen[keys] = r
        return r
    return remembered


# keywords bounding a size: keyword -> (the type they apply to, how len(instance) compares with the bound)
_SIZES = {"minLength": (str, operator.ge), "maxLength": (str, operator.le), "minItems": (list, operator.ge),
          "maxItems": (list, operator.le), "minProperties": (dict, operator.ge), "maxProperties": (dict, operator.le)}


def _size_keyword(kind: type, compare) -> Callable:
    def build(_compiler, n, _schema) -> Check:
        n = _SchemaCompiler._count(n)
        return lambda v: not isinstance(v, kind) or compare(len(v), n)
    return build


_KEYWORDS = {("$ref" if name == "ref" else name): getattr(_SchemaCompiler, "_kw_" + name)
             for name in (n[len("_kw_"):] for n in vars(_SchemaCompiler) if n.startswith("_kw_"))}
_KEYWORDS.update({keyword: _size_keyword(kind, compare) for keyword, (kind, compare) in _SIZES.items()})


def _all_of(check: Check, values) -> bool | None:
    verdict = True
    for value in values:
        r = check(value)
        if r is False:
            return False
        if r is None:
            verdict = None
    return verdict


def compile_schema(schema, pattern: Callable[[str], Any]) -> Check:
    """`schema` (a whole schema: its `$defs` are what `$ref` may name) as one check; `pattern` compiles a
    `pattern` keyword's expression the way the judging validator matches it."""
    return _SchemaCompiler(schema if isinstance(schema, dict) else {}, pattern).compile(schema)
