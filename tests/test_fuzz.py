"""Property: random or mutated specs never crash the loader; they validate or produce diagnostics."""

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshforge.diagnostics import Diagnostics
from meshforge.pipeline import compile_documents
from meshforge.source import parse_text

from .conftest import BASELINE, NOW
from .specs import route_group, sandbox

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


# -- every command on hostile inputs: a diagnostic or a usage error, never a traceback ------------

BOMB = "---\n".join(["a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                     "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"] * 100)
DEEP_VS = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\n"
           "spec:\n  hosts: [cartservice]\n  http: " + "[" * 350 + "]" * 350 + "\n")
HOSTILE = {
    "alias-bomb": {"b.yaml": BOMB},
    "deep-list": {"d.yaml": "[" * 500 + "]" * 500},
    "deep-vs": {"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.x")), "vs.yaml": DEEP_VS},
    "recursive-alias": {"r.yaml": "a: &a [*a]\n"},
    "binary": {"x.yaml": "\x00\x01\x02 not yaml"},
    "forged-namespace": {"k.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: \"x\\nREADME.md\\ny\"}\n"
                                   "spec: {ports: [{name: http, port: 80}]}\n"},
    "vs-escape": {"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.x")),
                  "vs.yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                             "metadata: {name: ../../x, namespace: shop}\nspec: {hosts: [cartservice]}\n"},
    "huge-token": {"t.yaml": "a: " + "x" * 2_000_000 + "\n"},
    "valid": {"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.x"))},
}


def commands(d, tmp_path):
    out = tmp_path / "out"
    yield ("validate", str(d))
    yield ("explain", str(d), "--from", "frontend.shop", "--routing-key", "pr-1")
    yield ("explain", str(d), "--from", "\x00", "--routing-key", "../..")
    for fmt in ("istio", "xds", "envoy-static"):
        yield ("render", str(d), "--format", fmt)
        yield ("render", str(d), "--format", fmt, "-o", str(out))
        yield ("diff", str(d), "--format", fmt, "--against", str(out))
    yield ("render", str(d), "--format", "istio", "--now", "yesterday")
    yield ("render", str(d), "--format", "xds", "--outbound-port", "70000")


def test_every_command_on_hostile_inputs_ends_in_a_diagnostic(write, tmp_path):
    from click.testing import CliRunner

    from meshforge.cli import main

    runner = CliRunner()
    for name, files in HOSTILE.items():
        d = write(files, sub=name)
        for args in commands(d, tmp_path / name):
            r = runner.invoke(main, list(args), catch_exceptions=True)
            assert r.exit_code in (0, 1, 2), (name, args, r.exit_code, r.output[-500:])
            assert r.exception is None or isinstance(r.exception, SystemExit), (name, args, repr(r.exception))
            assert "Traceback" not in r.output


def test_special_files_among_the_inputs_are_refused_without_hanging(cli, tmp_path):
    import os

    d = tmp_path / "specs"
    d.mkdir()
    (d / "b.yaml").write_text(BASELINE)
    os.mkfifo(d / "fifo.yaml")
    os.symlink("/dev/zero", d / "zero.yaml")
    r = cli("validate", str(d))
    assert r.exit_code == 1 and r.output.count("not a regular file") == 2
    r = cli("validate", "/dev/zero")
    assert r.exit_code == 1 and "not a regular file" in r.output


def test_alias_bomb_is_refused_fast_and_small(tmp_path):
    import resource
    import time

    from meshforge.source import MAX_NODES_PER_FILE

    (tmp_path / "b.yaml").write_text(BOMB)
    diags = Diagnostics()
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from meshforge.source import load_paths

    assert load_paths([str(tmp_path)], diags) == []
    assert [d.code for d in diags.items] == ["MF003"] and str(MAX_NODES_PER_FILE) in diags.items[0].message
    assert time.perf_counter() - t0 < 5  # generous for a loaded CI machine; measured ~10 ms (BENCHMARKS.md)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_addresses(cli):
    from meshforge.names import join_address, parse_address

    assert parse_address("[::1]:18000") == ("::1", 18000) and join_address("::1", 1) == "[::1]:1"
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    for bad in ("::1:18000", "host", ":80", "h:99999", "[h]:1", "a b:1"):
        try:
            parse_address(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    r = cli("bootstrap", "--service", "cart.shop", "--xds-address", "[::1]:18000")
    assert r.exit_code == 0 and "address: ::1" in r.output
    assert cli("bootstrap", "--service", "cart.shop", "--xds-address", "::1:18000").exit_code == 2
    # an address to connect to: port 0 is an error, and the message does not offer it
    for r in (cli("bootstrap", "--service", "cart.shop", "--xds-address", "127.0.0.1:0"),
              cli("doctor", "--admin-address", "127.0.0.1:0", "--routing-key", "pr-1")):
        assert r.exit_code == 2 and "1-65535" in r.output and "free" not in r.output
