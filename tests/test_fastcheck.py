"""spec/fastcheck: a schema compiled to plain checks says True or False exactly where jsonschema (with
spec.schema's anchored patterns) says valid or invalid, and None where it cannot tell; for the documents
people write it can tell (the fast way is the one taken)."""

from __future__ import annotations

import copy
import glob
import math
import os

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshforge.diagnostics import Diagnostics
from meshforge.source import parse_text
from meshforge.spec import schema as spec_schema
from meshforge.spec.fastcheck import compile_schema
from meshforge.spec.schema import KINDS, fast_check, load_schema, validate_document

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JUDGE = jsonschema.validators.extend(jsonschema.validators.Draft202012Validator, {"pattern": spec_schema._pattern})


def judged(schema, instance) -> bool:
    return not any(JUDGE(schema).iter_errors(instance))


def corpus() -> list[tuple[str, dict]]:
    """Every meshforge document in the repository's examples, tests and golden inputs."""
    out = []
    for f in sorted(glob.glob(f"{ROOT}/examples/**/*.y*ml", recursive=True) +
                    glob.glob(f"{ROOT}/tests/**/*.y*ml", recursive=True) +
                    glob.glob(f"{ROOT}/golden/**/*.y*ml", recursive=True)):
        with open(f, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for doc in parse_text(text, f, Diagnostics()):
            if isinstance(doc.data, dict) and doc.data.get("kind") in KINDS:
                out.append((doc.data["kind"], doc.data))
    return out


CORPUS = corpus()


def test_the_corpus_is_there():
    kinds = {k for k, _ in CORPUS}
    assert kinds == set(KINDS) and len(CORPUS) > 50


def test_on_every_document_of_the_repository_it_agrees_and_decides_the_valid_ones():
    undecided = []
    for kind, data in CORPUS:
        verdict, truth = fast_check(kind)(data), judged(load_schema(kind), data)
        assert verdict in (None, truth), (kind, data)
        if truth and verdict is not True:
            undecided.append(data)
    assert undecided == []  # every valid document takes the fast way


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70000) | st.sampled_from([1.0, 2.5, -0.0, math.nan, math.inf, 8080.0]) |
    st.sampled_from(["", "cart", "Cart", "pr-1", "a" * 64, "cart\n", "shop.example.com", "10.0.0.0/8", "http",
                     "Baseline", "KeepRouting", "signed", "1.2.3.4", "x-key", "meshforge.dev/v1alpha1", "Sandbox"]) |
    st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "host", "port", "service", "to", "forks", "x", "labels", "namespace", "image"]),
        inner, max_size=3),
    max_leaves=8)


def _paths(value, here=()):
    yield here
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, here + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, here + (i,))


@st.composite
def mutated(draw):
    kind, data = draw(st.sampled_from(CORPUS))
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "delete", "add"]))
        if how == "replace":
            parent[path[-1]] = draw(PLAIN)
        elif how == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "name", "port", "to", "x"]))] = draw(PLAIN)
        else:
            parent.append(draw(PLAIN))
    return kind, data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_changed_document_gets_the_verdict_jsonschema_gives(case):
    kind, data = case
    assert fast_check(kind)(data) in (None, judged(load_schema(kind), data))


KEYWORD_SCHEMAS = [
    {"type": "integer"}, {"type": "number"}, {"type": ["string", "null"]}, {"type": "boolean"},
    {"minimum": 1, "maximum": 65535}, {"maxLength": 3, "minLength": 1}, {"pattern": "^[a-z]+$"},
    {"const": "cart"}, {"enum": ["a", "b"]}, {"minItems": 1, "maxItems": 2}, {"uniqueItems": True},
    {"required": ["name"], "properties": {"name": {"type": "string"}}},
    {"properties": {"name": {"type": "string"}}, "additionalProperties": False},
    {"additionalProperties": {"type": "integer"}}, {"propertyNames": {"pattern": "^[a-z]$"}},
    {"minProperties": 1}, {"items": {"type": "string"}}, {"not": {"required": ["host"]}},
    {"anyOf": [{"required": ["host"]}, {"required": ["port"]}]},
    {"oneOf": [{"required": ["host"]}, {"required": ["port"]}, {"type": "array"}]},
    {"allOf": [{"type": "object"}, {"required": ["x"]}]},
    {"$defs": {"n": {"type": "string", "maxLength": 4}}, "items": {"$ref": "#/$defs/n"}},
    {"$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "$ref": "#/$defs/t"},  # recursive
    True, False,
]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(range(len(KEYWORD_SCHEMAS))), PLAIN)
def test_each_keyword_means_what_jsonschema_means(index, instance):
    """Edge values included: 1.0 is an integer, True is not; NaN is below no minimum; "cart\\n" does
    not match ^[a-z]+$ (the anchored pattern)."""
    schema = KEYWORD_SCHEMAS[index]
    verdict = compile_schema(schema, spec_schema._full)(instance)
    if verdict is None:  # the one case left to jsonschema: uniqueness among values that are not all strings
        assert schema == {"uniqueItems": True} and not all(isinstance(x, str) for x in instance)
    else:
        assert verdict == judged(schema, instance)


@pytest.mark.parametrize("schema", [
    {"type": "object", "patternProperties": {"^x-": {}}, "additionalProperties": False},
    {"format": "email"}, {"dependentRequired": {"a": ["b"]}}, {"$ref": "other.json#/x"},
    {"const": 1}, {"enum": [1, True]}, {"prefixItems": [{}], "items": False},
])
def test_what_it_does_not_compile_it_leaves_to_jsonschema(schema):
    check = compile_schema(schema, spec_schema._full)
    assert all(check(v) is None for v in ({}, {"a": 1}, [1, 2], "x", 1))


def test_an_unknown_part_deep_inside_is_undecided_there_only():
    schema = {"type": "object", "properties": {"a": {"format": "email"}, "b": {"type": "string"}}}
    check = compile_schema(schema, spec_schema._full)
    assert check({"b": "x"}) is True  # the unknown part is not reached
    assert check({"a": "x", "b": "y"}) is None
    assert check({"a": "x", "b": 1}) is False  # whatever `a` is, `b` is wrong


def test_uniqueness_beyond_strings_is_left_to_jsonschema():
    check = compile_schema({"uniqueItems": True}, spec_schema._full)
    assert (check(["a", "b"]), check(["a", "a"]), check([1, True]), check([1, 1.0])) == (True, False, None, None)


def test_an_invalid_document_still_gets_jsonschema_s_diagnostics():
    text = "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: pr-1}\nspec: {froks: []}\n"
    d = Diagnostics()
    (doc,) = parse_text(text, "s.yaml", d)
    assert fast_check("Sandbox")(doc.data) is False
    assert validate_document(doc, d) is False
    assert sorted(x.code for x in d.items) == ["MF101", "MF102"]


def test_key_sets_are_remembered_only_when_small():
    """The "exactly one of" forms are remembered per key set; a mapping with many keys is checked every time,
    so a hostile file cannot fill memory with large remembered key sets, and the verdict is the same."""
    from meshforge.spec import fastcheck

    schema = {"oneOf": [{"required": ["host"]}, {"required": ["port"]}]}
    check = compile_schema(schema, spec_schema._full)
    big = {f"k{i}": i for i in range(fastcheck._BY_KEYS_SIZE + 1)}
    assert check(big) is False and check({**big, "host": 1}) is True
    assert check({"host": 1}) is True and check({"host": 1, "port": 2}) is False
    (seen,) = [c.cell_contents for c in check.__closure__ if isinstance(c.cell_contents, dict)]  # its memo
    assert all(len(k) <= fastcheck._BY_KEYS_SIZE for k in seen) and len(seen) == 2
