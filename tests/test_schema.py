"""spec/schema: jsonschema errors become diagnostics naming the field, what is wrong and a hint."""

from __future__ import annotations

import pytest

from meshforge.diagnostics import Diagnostics
from meshforge.source import parse_text
from meshforge.spec.schema import KINDS, load_schema, validate_document

SANDBOX = """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1, namespace: shop}
spec:
  forks:
  - service: cart
    to: {host: cart-pr-1.shop.svc.cluster.local}
"""


def check(text: str) -> list[tuple[str, int, int, str, str | None]]:
    d = Diagnostics()
    (doc,) = parse_text(text, "s.yaml", d)
    validate_document(doc, d)
    return [(x.code, x.span.line, x.span.column, x.span.pointer, x.hint) for x in d.items]


def test_valid_document_has_no_diagnostics():
    assert check(SANDBOX) == []


def test_unknown_field_points_at_the_key_with_did_you_mean():
    (code, line, col, ptr, hint), = check(SANDBOX.replace("  forks:", "  froks: []\n  forks:"))
    assert (code, line, col, ptr) == ("MF101", 5, 3, "/spec/froks") and hint == 'did you mean "forks"?'


def test_missing_required_field_says_what_to_add():
    got = check(SANDBOX.replace("  - service: cart\n    to", "  - to"))
    assert [(c, p) for c, _, _, p, _ in got] == [("MF102", "/spec/forks/0")]
    assert got[0][4].startswith("add service:")


def test_wrong_type_suggests_quoting():
    (code, line, col, ptr, hint), = check(SANDBOX.replace("service: cart", "service: 7"))
    assert (code, line, col, ptr, hint) == ("MF103", 6, 14, "/spec/forks/0/service", "quote it to make it a string")


def test_one_of_reports_the_branch_that_failed():
    got = check(SANDBOX.replace("{host: cart-pr-1.shop.svc.cluster.local}", "{host: a, endpoints: []}"))
    assert got and all(c == "MF104" or c == "MF101" for c, *_ in got)
    assert all(p.startswith("/spec/forks/0/to") for _, _, _, p, _ in got)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_schema_with_descriptions(kind):
    schema = load_schema(kind)
    assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
    assert schema["properties"]["kind"]["const"] == kind


def test_patterns_are_full_matches_a_trailing_newline_is_refused():
    got = check(SANDBOX.replace("service: cart", 'service: "cart\\n"').replace(
        "host: cart-pr-1.shop.svc.cluster.local", 'host: "cart-pr-1.shop\\n"'))
    assert sorted(p for _, _, _, p, _ in got) == ["/spec/forks/0/service", "/spec/forks/0/to/host"]
    assert check(SANDBOX.replace("name: pr-1,", 'name: "pr-1\\n",'))[0][3] == "/metadata/name"


def test_labels_follow_kubernetes_rules():
    bad_key = SANDBOX.replace("namespace: shop}", "namespace: shop, labels: {'a b': x}}")
    bad_value = SANDBOX.replace("namespace: shop}", "namespace: shop, labels: {team: 'x\\ny'}}")
    good = SANDBOX.replace("namespace: shop}", "namespace: shop, labels: {example.com/team: a.b_c-1, empty: ''}}")
    assert [c for c, *_ in check(bad_key)] == ["MF104"] and [c for c, *_ in check(bad_value)] == ["MF104"]
    assert check(good) == []
    assert check(SANDBOX.replace("host: cart-pr-1.shop.svc.cluster.local", "host: " + "a." * 127 + "b")) != []


@pytest.mark.parametrize("to", ["{host: a.example}", "{host: a.example, port: 81}", "{endpoints: [{address: 10.0.0.1, port: 80}]}",
                                "{host: a.example, endpoints: [{address: 10.0.0.1, port: 80}]}", "{}",
                                "{endpoints: [{address: 10.0.0.1, port: 80}], port: 81}", "{subset: {labels: {v: a}}}",
                                "{local: {owner: a@example.com}, host: b}", "[host]", "{nope: 1}"])
def test_one_of_decided_fast_reports_what_jsonschema_reports(to):
    """The "exactly one of host, endpoints, ..." oneOf is decided by the compiled checks (fastcheck) from the
    instance's keys, remembered per key set; the diagnostics are those of jsonschema's own oneOf (checked
    against it), every time."""
    import jsonschema

    from meshforge.spec import schema

    text = SANDBOX.replace("{host: cart-pr-1.shop.svc.cluster.local}", to)
    d = Diagnostics()
    (doc,) = parse_text(text, "s.yaml", d)
    stock = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": schema._pattern})
    want = Diagnostics()
    for top in sorted(stock(load_schema("Sandbox")).iter_errors(doc.data),
                      key=lambda e: (list(map(str, e.absolute_path)), e.validator)):
        for err in schema._leaf_errors(top):
            schema._report(doc, err, schema._Budget(want, schema.MAX_SCHEMA_ERRORS))
    assert check(text) == check(text) == [(x.code, x.span.line, x.span.column, x.span.pointer, x.hint) for x in want.items]


@pytest.mark.parametrize("extra", [99, 100, 5_000])
def test_a_document_lists_at_most_so_many_schema_errors_and_counts_the_rest(extra):
    """A mapping of thousands of unknown keys (or any flood of errors in one document) lists the first
    MAX_SCHEMA_ERRORS and one MF105 at the document's start counting the rest, so the output stays readable
    and bounded; the document is still refused."""
    from meshforge.spec.schema import MAX_SCHEMA_ERRORS

    keys = "".join(f"      k{i}: v\n" for i in range(extra))
    text = SANDBOX.replace("    to: {host: cart-pr-1.shop.svc.cluster.local}\n",
                           "    to:\n      host: cart-pr-1.shop\n" + keys)
    d = Diagnostics()
    (doc,) = parse_text(text, "s.yaml", d)
    assert validate_document(doc, d) is False
    codes = [x.code for x in d.items]
    assert codes.count("MF101") == min(extra, MAX_SCHEMA_ERRORS)
    summary = [x for x in d.items if x.code == "MF105"]
    if extra <= MAX_SCHEMA_ERRORS:
        assert summary == []
    else:
        assert [(x.span.line, x.message.split()[0]) for x in summary] == [(1, str(extra - MAX_SCHEMA_ERRORS))]
