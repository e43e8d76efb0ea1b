"""The command line: exit codes, diagnostics formats, explain."""

import json

from .conftest import BASELINE, sandbox


def test_validate_ok_invalid_and_usage(cli, write):
    good = write({"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c.example.com"))})
    r = cli("validate", good, "--now", "2026-11-26T00:00:00Z")
    assert r.exit_code == 0 and "valid: 5 services, 1 active sandboxes" in r.output
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
