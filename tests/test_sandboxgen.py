"""sandboxgen / `meshforge sandbox create`: a valid Sandbox for any branch, usage errors naming the argument."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from meshforge.names import dns1123_label
from meshforge.sandboxgen import name_from_branch, parse_ttl


@given(st.text(min_size=1, max_size=300).filter(lambda b: any(c.isascii() and c.isalnum() for c in b)))
def test_any_branch_gives_a_dns_label(branch):
    assert dns1123_label(name_from_branch(branch))


def test_branch_names():
    assert name_from_branch("feature-login") == "feature-login"  # already a name: kept
    assert re.fullmatch(r"feature-abc-123-x-[0-9a-f]{12}", name_from_branch("feature/ABC-123_x"))
    taken = name_from_branch("feature/login")
    assert name_from_branch(taken) != taken  # a branch named after another's sandbox gets its own name
    names = {name_from_branch(b) for b in ("feature/login", "Feature_Login", "feature-login", "feature.login")}
    assert len(names) == 4  # normalising alone would give feature-login four times
    a, b = name_from_branch("feature/" + "x" * 80 + "-one"), name_from_branch("feature/" + "x" * 80 + "-two")
    assert len(a) <= 63 and len(b) <= 63 and a != b and a == name_from_branch("feature/" + "x" * 80 + "-one")
    with pytest.raises(ValueError, match="--branch"):
        name_from_branch("///")


def test_ttl():
    assert parse_ttl("90m") == timedelta(minutes=90) and parse_ttl("72h") == timedelta(hours=72)
    assert parse_ttl("3d") == timedelta(days=3)
    for bad in ("", "3", "3w", "-1h", "0h", "1.5h"):
        with pytest.raises(ValueError, match="--ttl"):
            parse_ttl(bad)


def test_the_command_prints_a_sandbox_that_validates(cli, tmp_path):
    out = tmp_path / "pr.yaml"
    r = cli("sandbox", "create", "--branch", "Feature/Cart", "--fork", "cartservice=registry.example/cart:pr-1",
            "--env", "cartservice:MODE=beta", "--ttl", "3d", "--now", "2026-11-27T10:00:00Z", "--namespace", "shop",
            "--label", "team=cart", "-o", out)
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(out.read_text())
    assert doc["metadata"] == {"name": name_from_branch("Feature/Cart"), "namespace": "shop", "labels": {"team": "cart"}}
    assert doc["spec"]["expiresAt"] == "2026-11-30T10:00:00Z"
    assert doc["spec"]["forks"] == [{"service": "cartservice", "to": {"workload": {
        "images": [{"image": "registry.example/cart:pr-1"}], "env": [{"name": "MODE", "value": "beta"}]}}}]
    from .conftest import BOUTIQUE

    r = cli("validate", BOUTIQUE, out, "--now", "2026-11-27T10:00:00Z", "--quiet")
    assert "MF201" in r.output  # it names cartservice in namespace shop, which Online Boutique does not have
    plain = cli("sandbox", "create", "pr-1", "--fork", "cartservice=registry.example/cart:pr-1")
    one = tmp_path / "one.yaml"
    one.write_text(plain.output)
    assert cli("validate", BOUTIQUE, one, "--quiet").exit_code == 0


@pytest.mark.parametrize("args,named", [
    (["--fork", "cart=img:1"], "NAME or --branch"),
    (["x", "--branch", "b", "--fork", "cart=img:1"], "NAME or --branch"),
    (["x"], "--fork"),
    (["x", "--fork", "cart"], "--fork"),
    (["x", "--fork", "cart=UPPER:1"], "--fork"),
    (["x", "--fork", "cart=img:1", "--env", "other:A=1"], "--env"),
    (["x", "--fork", "cart=img:1", "--env", "cart:1A=1"], "--env"),
    (["x", "--fork", "cart=img:1", "--ttl", "soon"], "--ttl"),
    (["x", "--fork", "cart=img:1", "--label", "a b=c"], "--label"),
    (["x", "--fork", "cart=img:1", "--namespace", "Bad"], "--namespace"),
    (["Bad_Name", "--fork", "cart=img:1"], "NAME"),
])
def test_bad_arguments_are_usage_errors_naming_the_argument(cli, args, named):
    r = cli("sandbox", "create", *args)
    assert r.exit_code == 2 and named in r.output, r.output


def test_the_output_file_s_directories_are_made(cli, tmp_path):
    out = tmp_path / "gitops" / "sandboxes" / "new" / "pr-3.yaml"
    r = cli("sandbox", "create", "pr-3", "--fork", "cartservice=registry.example/cart:pr-3", "-o", out)
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(out.read_text())["metadata"]["name"] == "pr-3"


@given(st.text(min_size=1, max_size=80).filter(lambda b: any(c.isascii() and c.isalnum() for c in b)),
       st.text(min_size=1, max_size=80).filter(lambda b: any(c.isascii() and c.isalnum() for c in b)))
def test_two_branches_never_share_a_name(a, b):
    if a != b:
        assert name_from_branch(a) != name_from_branch(b)


def test_sandbox_name_prints_what_create_would_name_it(cli):
    r = cli("sandbox", "name", "--branch", "feature/Cart_Totals")
    assert r.exit_code == 0 and r.output == name_from_branch("feature/Cart_Totals") + "\n"
    assert cli("sandbox", "name", "--branch", "///").exit_code == 2
