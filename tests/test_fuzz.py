"""Property: random or mutated specs never crash the loader; they validate or produce diagnostics."""

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshforge.diagnostics import Diagnostics
from meshforge.pipeline import compile_documents
from meshforge.source import parse_text

from .conftest import BASELINE, NOW, route_group, sandbox

SEEDS = [BASELINE, sandbox("pr-1", ("cartservice", "c.example.com"), labels="{f: x}", expires="2026-12-01T00:00:00Z"),
         route_group("g", labels="{f: x}"), route_group("h", sandboxes=["pr-1"], key="k")]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(string.printable, max_size=12),
                    st.sampled_from(["cartservice", "pr-1", "http", "grpc", "Sandbox", "meshforge.dev/v1alpha1"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.sampled_from(["name", "spec", "forks", "to", "host", "service", "ports", "port", "metadata", "kind",
                     "apiVersion", "match", "labels", "sandboxes", "routingKey", "expiresAt", "x"]), c, max_size=5),
    max_leaves=20)


def run(text: str) -> None:
    diags = Diagnostics()
    docs = parse_text(text, "fuzz.yaml", diags)
    model = compile_documents(docs, diags, NOW)
    assert (model is None) == diags.has_errors
    for d in diags.items:
        assert d.code.startswith("MF") and d.message


def mutate(data, path, value):
    if not path:
        return value
    if isinstance(data, dict) and data:
        k = sorted(data)[path[0] % len(data)]
        return {**data, k: mutate(data[k], path[1:], value)}
    if isinstance(data, list) and data:
        i = path[0] % len(data)
        return data[:i] + [mutate(data[i], path[1:], value)] + data[i + 1:]
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.integers(0, 50), min_size=0, max_size=6), values)
def test_mutated_specs_never_crash(seed, path, value):
    docs = [yaml.safe_load(s) for s in SEEDS]
    docs[seed] = mutate(docs[seed], path, value)
    run("---\n".join(yaml.safe_dump(d) for d in docs))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=300))
def test_random_text_never_crashes(text):
    run(text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 400), st.integers(1, 10), st.text(string.printable, max_size=5))
def test_spliced_text_never_crashes(seed, at, cut, insert):
    run(BASELINE + "---\n" + seed[:at] + insert + seed[at + cut:])
