"""The command line: exit codes, diagnostics formats, explain."""

import json

from .conftest import BASELINE
from .specs import sandbox


def test_validate_ok_invalid_and_usage(cli, write):
    good = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.example.com"))})
    r = cli("validate", good, "--now", "2026-11-26T00:00:00Z")
    assert r.exit_code == 0 and "valid: 5 services, 1 active sandbox" in r.output
    bad = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservce", "c.example.com"))}, sub="bad")
    r = cli("validate", bad)
    assert r.exit_code == 1
    assert 's.yaml:8:14: error[MF201]: unknown service \'cartservce\'\n  at /spec/forks/0/service\n' \
           '  hint: did you mean "cartservice"?' in r.output
    assert cli("validate", good, "--now", "yesterday").exit_code == 2
    assert cli("validate").exit_code == 2


def test_validate_json_diagnostics(cli, write):
    bad = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("redis-cart", "c.example.com"))})
    r = cli("validate", bad, "--diagnostics-format", "json")
    assert r.exit_code == 1
    [d] = json.loads(r.output)
    assert d["code"] == "MF202" and d["line"] == 8 and d["column"] == 14 and d["pointer"] == "/spec/forks/0/service"
    assert d["file"].endswith("s.yaml") and d["severity"] == "error" and "HTTP" in d["hint"]


def test_explain_walks_the_graph(cli, write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("payments.billing", "p.example.com"))})
    r = cli("explain", d, "--from", "frontend", "--routing-key", "pr-1", "--output", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    hops = {h["service"]: h for h in out["hops"]}
    assert out["active"] and set(hops) == {"frontend.shop", "cartservice.shop", "checkout.shop", "payments.billing",
                                            "redis-cart.shop"}
    assert hops["payments.billing"]["version"] == "sandbox" and hops["payments.billing"]["via"] == "checkout.shop"
    assert hops["payments.billing"]["depth"] == 2 and hops["payments.billing"]["destination"] == "host p.example.com"
    assert all(h["version"] == "baseline" for s, h in hops.items() if s != "payments.billing")
    text = cli("explain", d, "--from", "frontend.shop", "--routing-key", "pr-1").output
    assert "    payments.billing  sandbox pr-1 -> host p.example.com" in text


def test_explain_unknown_key_says_so_plainly(cli, write):
    d = write({"b.yaml": BASELINE})
    r = cli("explain", d, "--from", "checkout", "--routing-key", "nobody")
    assert r.exit_code == 0
    assert "not defined by any active sandbox or route group: every hop reaches the baseline" in r.output
    r = cli("explain", d, "--from", "chekout", "--routing-key", "x")
    assert r.exit_code == 2 and 'did you mean "checkout"' in r.output


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and "meshforge, version" in r.output


def test_render_refuses_to_overwrite_a_users_file_and_diff_needs_a_directory(cli, write, tmp_path):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c1.shop.svc.cluster.local"))})
    out = tmp_path / "out"
    (out / "shop").mkdir(parents=True)
    mine = out / "shop" / "virtualservice-meshforge-cartservice.yaml"
    mine.write_text("mine\n")
    r = cli("render", str(d), "--format", "istio", "-o", str(out))
    assert r.exit_code == 1 and "not written by meshforge" in r.output and "nothing was changed" in r.output
    assert mine.read_text() == "mine\n" and not (out / ".meshforge-files").exists()
    r = cli("diff", str(d), "--format", "istio", "--against", str(tmp_path / "missing"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_explain_on_online_boutique_invents_no_edges(cli):
    from .conftest import BOUTIQUE

    r = cli("explain", str(BOUTIQUE), "--from", "checkoutservice", "--routing-key", "nope", "--quiet")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SERVICE ")) + 1
    table = lines[start:lines.index("", start)]
    redis = [i for i, line in enumerate(table) if "redis-cart" in line]
    assert len(redis) == 1 and table[redis[0] - 1].strip().startswith("cartservice.default")
    assert table[redis[0]].startswith("    redis-cart")  # under cartservice, not under a service of unknown deps
    assert r.output.count("dependencies unknown for") == 1
    # frontend calls a service absent from the manifests: what it calls is unknown, not "nothing"
    r = cli("explain", str(BOUTIQUE), "--from", "frontend", "--routing-key", "nope", "--quiet")
    assert "frontend.default  baseline  (dependencies unknown)" in r.output
    assert "note[" not in r.output  # --quiet


def test_explain_suggests_near_keys_and_lists_known_ones(cli, write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("cart-pr-42", ("cartservice", "c.x")),
               "t.yaml": sandbox("checkout-pr-7", ("checkout", "k.x"))})
    r = cli("explain", str(d), "--from", "frontend.shop", "--routing-key", "cart-pr-24")
    assert 'did you mean "cart-pr-42"?' in r.output and "known keys: cart-pr-42, checkout-pr-7" in r.output


def test_plurals_colour_and_stdout_documents_named(cli, write, monkeypatch):
    from meshforge.diagnostics import Diagnostics, Span, render_text

    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.x"))})
    r = cli("validate", str(d))
    assert "valid: 5 services, 1 active sandbox (0 expired), 1 routing key" in r.output
    diags = Diagnostics()
    diags.error("MF201", "x", Span("f.yaml", 1, 1))
    assert render_text(diags.items).endswith("1 error, 0 warnings\n")
    assert "\033[" in render_text(diags.items, color=True) and "\033[" not in render_text(diags.items)
    r = cli("render", str(d), "--format", "envoy-static")
    docs = r.output.split("---\n")
    assert [doc.splitlines()[0] for doc in docs] == ["# cartservice.shop.yaml", "# checkout.shop.yaml",
                                                     "# frontend.shop.yaml", "# payments.billing.yaml",
                                                     "# redis-cart.shop.yaml"]


def test_render_help_leads_with_the_required_format(cli):
    text = cli("render", "--help").output
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  -")]
    assert options[0] == "--format", options


def test_an_empty_render_says_why(cli, write):
    d = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.shop.svc.cluster.local"))})
    r = cli("render", d, "--format", "kubernetes")
    assert r.exit_code == 0 and r.stdout == ""
    assert "nothing to render for --format kubernetes" in r.stderr and "workload" in r.stderr
    assert "nothing to render" not in cli("render", d, "--format", "istio").stderr


def test_explain_refuses_a_key_that_is_no_routing_key(cli, write):
    d = write({"b.yaml": BASELINE})
    for args in (["--from", "frontend", "--routing-key", "bad key!"], ["--url", "http://x/", "--routing-key", "A"]):
        r = cli("explain", d, *args)
        assert r.exit_code == 2 and "is not a routing key" in r.output, args


def test_a_file_with_nothing_meshforge_reads_is_named(cli, write):
    workflow = "name: sandbox\non: {pull_request: {}}\njobs: {}\n"
    d = write({"b.yaml": BASELINE, "ci/sandbox.yaml": workflow})
    r = cli("validate", d)
    assert r.exit_code == 0
    assert "sandbox.yaml:1:1: warning[MF008]: nothing here is an object meshforge reads" in r.output
    assert "MF008" not in cli("validate", write({"b.yaml": BASELINE}, sub="only")).output


def test_namespace_gives_namespace_less_manifests_their_namespace(cli):
    """golden/namespace-less: helm template output names no namespace; --namespace otel is where it was
    installed (for every command that reads specs), and a Sandbox without one lands there too."""
    from pathlib import Path

    d = Path(__file__).resolve().parents[1] / "golden" / "namespace-less" / "input"
    r = cli("explain", d, "-n", "otel", "--from", "frontend.otel", "--routing-key", "flags-pr-2", "--output", "json")
    assert r.exit_code == 0, r.output
    hops = {h["service"]: h["version"] for h in json.loads(r.stdout)["hops"]}
    assert hops == {"frontend.otel": "sandbox", "flagd.otel": "sandbox", "otel-collector.otel": "baseline"}
    out = cli("render", d, "--namespace", "otel", "--format", "kubernetes").stdout
    assert "namespace: otel" in out and "namespace: default" not in out
    assert "valid: 3 services" in cli("validate", d, "-n", "otel").output
    assert cli("validate", d, "-n", "Bad_NS").exit_code == 2
    assert "frontend.default" in cli("explain", d, "--from", "frontend", "--routing-key", "x").output
    for command in ("validate", "explain", "render", "diff", "serve"):
        assert "--namespace" in cli(command, "--help").output, command
    assert "--namespace" in cli("sandbox", "show", "--help").output
