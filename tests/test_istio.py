"""Istio backend: strict CRD validity, baggage regex semantics, per-request routing, merges, render and diff."""

import itertools
from typing import assert_never

import pytest
import re2
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshforge import backends
from meshforge.carriers import baggage_regex, key_from_baggage
from meshforge.diagnostics import Diagnostics
from meshforge.emit import istio
from meshforge.explain import explain
from meshforge.model import EndpointsDestination, HostDestination, SubsetDestination
from meshforge.pipeline import compile_paths

from .conftest import BAGGAGE_TABLE, BASELINE, BK, NOW, SHOP
from .istio_eval import route
from .istio_schema import errors
from .specs import sandbox


@pytest.mark.parametrize("values,carried", BAGGAGE_TABLE)
def test_baggage_regex_matches_exactly_one_member(values, carried):
    pattern = re2.compile(baggage_regex(BK, "k7x2m9"))
    joined = ",".join(values)
    assert (pattern.fullmatch(joined) is not None) == (carried == "k7x2m9"), joined
    assert key_from_baggage(values, BK) == carried


def test_baggage_key_with_regex_characters_is_escaped():
    p = re2.compile(baggage_regex("a.b*c", "k"))
    assert p.fullmatch("a.b*c=k") and not p.fullmatch("axb*c=k") and not p.fullmatch("a.bbc=k")
    with pytest.raises(ValueError):
        baggage_regex(BK, ".*")


def compile_dir(d, now=NOW):
    model, diags = compile_paths([str(d)], now)
    assert model is not None, diags.items
    return model




def test_every_object_validates_strictly_and_is_labelled(write):
    model = compile_dir(write(SHOP))
    objs = istio.emit(model)
    kinds = sorted((o.kind, o.namespace, o.name) for o in objs)
    assert kinds == [("DestinationRule", "billing", "meshforge-payments"),
                     ("ServiceEntry", "shop", "meshforge-checkout.checkout-pr-7"),
                     ("VirtualService", "billing", "meshforge-payments"),
                     ("VirtualService", "shop", "meshforge-cartservice"),
                     ("VirtualService", "shop", "meshforge-checkout")]
    for o in objs:
        assert errors(o.body) == [], (o.kind, o.name)
        per_sandbox = {"meshforge.dev/sandbox": "checkout-pr-7"} if o.kind == "ServiceEntry" else {}
        assert o.body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "meshforge", **per_sandbox}
    dr = next(o for o in objs if o.kind == "DestinationRule").body
    assert dr["spec"]["subsets"] == [{"name": "baseline", "labels": {"version": "v1"}},
                                     {"name": "checkout-pr-7", "labels": {"version": "pr-7"}}]


def requests_for(key):
    """Every way a request may carry `key`."""
    return [{"x-meshforge-routing-key": [key]}, {"baggage": [f"{BK}={key}"]},
            {"baggage": [f"a=1, {BK} = {key};ttl=3"]}, {"baggage": ["a=1", f"{BK}={key}"]}]


def expected_destination(model, svc, port, fork):
    if fork is None:
        d = {"host": svc.fqdn, "port": {"number": port}}
        if svc.id == "payments.billing":
            d["subset"] = "baseline"
        return d
    match fork.destination:
        case HostDestination(host=host, port=host_port):
            return {"host": host, "port": {"number": host_port or port}}
        case EndpointsDestination():
            return {"host": istio.endpoints_host(svc, fork.sandbox), "port": {"number": port}}
        case SubsetDestination():
            return {"host": svc.fqdn, "port": {"number": port}, "subset": fork.sandbox}
        case other:
            assert_never(other)


def test_requests_land_where_explain_says(write):
    model = compile_dir(write(SHOP))
    objs = [o.body for o in istio.emit(model)]
    keys = [k.key for k in model.keys] + ["old", "unknown-key"]
    checked = 0
    for key in keys:
        hops = explain(model, model.service_by_id["frontend.shop"], key).hops
        for hop in hops:
            svc = model.service_by_id[hop.service]
            fork = model.destination_of(svc.id, key)
            assert (hop.version == "sandbox") == (fork is not None)
            for port in svc.routable_ports:
                for headers in requests_for(key) + [{}]:
                    want = expected_destination(model, svc, port.number, fork if headers else None)
                    got = route(objs, svc.fqdn, port.number, headers)
                    if fork is None and svc.id not in model.forks_by_service:
                        want = {"host": svc.fqdn}  # no VirtualService at all: plain Kubernetes routing
                    assert got == want, (key, svc.id, port.number, headers)
                    checked += 1
    assert checked > 100


def test_user_virtual_service_is_merged_not_duplicated(write):
    files = dict(SHOP)
    files["vs.yaml"] = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: cart
  namespace: shop
  resourceVersion: "123"
spec:
  hosts: [cartservice]
  http:
  - name: retries
    retries: {attempts: 3}
    route:
    - destination: {host: cartservice, port: {number: 7070}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: checkout-edge, namespace: shop}
spec:
  hosts: [checkout.shop.svc.cluster.local]
  gateways: [shop-gateway]
  http:
  - route:
    - destination: {host: checkout.shop.svc.cluster.local}
"""
    model = compile_dir(write(files))
    diags = Diagnostics()
    objs = istio.emit(model, diags)
    vss = {(o.namespace, o.name): o.body for o in objs if o.kind == "VirtualService"}
    assert ("shop", "meshforge-cartservice") not in vss and ("shop", "meshforge-checkout") not in vss
    cart = vss[("shop", "cart")]
    assert cart["apiVersion"] == "networking.istio.io/v1beta1" and "resourceVersion" not in cart["metadata"]
    assert "labels" not in cart["metadata"]  # never claimed: no managed-by label on the user's object
    assert cart["metadata"]["annotations"] == {"meshforge.dev/merged-routes": "2"}
    names = [r.get("name") for r in cart["spec"]["http"]]
    assert names == ["meshforge-k7x2m9", "meshforge-v2", "retries"]
    assert cart["spec"]["http"][-1]["retries"] == {"attempts": 3}
    assert [d.code for d in diags.items] == ["MF217"] and "shop/checkout-edge" in diags.items[0].message
    for o in objs:
        assert errors(o.body) == [], o.name
    # rendering the merged output again is stable (our routes are replaced, not stacked)
    again = istio.emit(model)
    assert [o.body for o in again] == [o.body for o in objs]


def test_render_directory_is_atomic_removes_stale_files_only(cli, write, tmp_path):
    d = write(SHOP)
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("mine\n")
    r = cli("render", d, "--format", "istio", "-o", out, "--now", "2026-11-26T00:00:00Z")
    assert r.exit_code == 0, r.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [".meshforge-files", "README.md", "billing/destinationrule-meshforge-payments.yaml",
                     "billing/virtualservice-meshforge-payments.yaml",
                     "shop/serviceentry-meshforge-checkout.checkout-pr-7.yaml",
                     "shop/virtualservice-meshforge-cartservice.yaml", "shop/virtualservice-meshforge-checkout.yaml"]
    # drop checkout-pr-7: its ServiceEntry and the payments objects go, nothing else is touched
    (d / "s.yaml").write_text(sandbox("cart-pr-42", ("cartservice", "cart-42.shop.svc.cluster.local"), key="k7x2m9"))
    (d / "g.yaml").unlink()
    assert cli("diff", d, "--format", "istio", "--against", out).exit_code == 1
    r = cli("render", d, "--format", "istio", "-o", out)
    assert r.exit_code == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [".meshforge-files", "README.md", "shop/virtualservice-meshforge-cartservice.yaml"]
    assert cli("diff", d, "--format", "istio", "--against", out).exit_code == 0
    # invalid specs: exit 1 and the directory is untouched
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (d / "s.yaml").write_text(sandbox("cart-pr-42", ("nope", "x.example.com")))
    r = cli("render", d, "--format", "istio", "-o", out)
    assert r.exit_code == 1 and {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_diff_prints_a_unified_diff(cli, write, tmp_path):
    d = write(SHOP)
    out = tmp_path / "out"
    assert cli("render", d, "--format", "istio", "-o", out, "--now", "2026-11-26T00:00:00Z").exit_code == 0
    (d / "s.yaml").write_text((d / "s.yaml").read_text().replace("cart-42.shop", "cart-43.shop"))
    r = cli("diff", d, "--format", "istio", "--against", out, "--now", "2026-11-26T00:00:00Z")
    assert r.exit_code == 1
    assert "--- a/shop/virtualservice-meshforge-cartservice.yaml" in r.output
    assert "-        host: cart-42.shop.svc.cluster.local" in r.output
    assert "+        host: cart-43.shop.svc.cluster.local" in r.output


def test_output_is_byte_identical_whatever_the_file_order(tmp_path, cli):
    texts = [SHOP["b.yaml"], *SHOP["s.yaml"].split("---\n"), SHOP["g.yaml"]]
    outputs = set()
    for perm in list(itertools.permutations(range(len(texts))))[:6]:
        d = tmp_path / ("p" + "".join(map(str, perm)))
        d.mkdir()
        for i, j in enumerate(perm):
            (d / f"{i}.yaml").write_text(texts[j])
        r = cli("render", d, "--format", "istio", "--now", "2026-11-26T00:00:00Z")
        assert r.exit_code == 0
        outputs.add(r.stdout)
    assert len(outputs) == 1
    docs = list(yaml.safe_load_all(outputs.pop()))
    assert len(docs) == 5 and all(errors(doc) == [] for doc in docs)


def test_merge_warns_when_user_routes_can_reach_subset_sandbox_pods(write):
    files = {"b.yaml": SHOP["b.yaml"],
             "s.yaml": "apiVersion: meshforge.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: pay-1, namespace: billing}\n"
                       "spec:\n  forks:\n  - service: payments\n    to: {subset: {labels: {version: pr-1}}}\n",
             "vs.yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: pay, namespace: billing}\n"
                        "spec:\n  hosts: [payments]\n  http:\n  - route:\n    - destination: {host: payments}\n"}
    diags = Diagnostics()
    objs = istio.emit(compile_dir(write(files)), diags)
    assert [d.code for d in diags.items] == ["MF302"] and "billing/pay" in diags.items[0].message
    assert all(errors(o.body) == [] for o in objs)


_members = st.one_of(
    st.builds(lambda sp1, k, sp2, sp3, v, sp4, prop: f"{sp1}{k}{sp2}={sp3}{v}{sp4}{prop}",
              st.sampled_from(["", " ", "\t"]), st.sampled_from(["userId", "xmeshforge-routing-key", "a"]),
              st.sampled_from(["", " "]), st.sampled_from(["", " "]),
              st.text(alphabet="abk7x2m9-=;", max_size=8), st.sampled_from(["", " "]),
              st.sampled_from(["", ";ttl=3", " ; p", ";"])),
    st.text(alphabet="ab =;,-", max_size=6))
_ours = st.builds(lambda sp1, sp2, sp3, v, sp4, prop: f"{sp1}{BK}{sp2}={sp3}{v}{sp4}{prop}",
                  st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " "]),
                  st.sampled_from(["k7x2m9", "k7x2m", "k7x2m9x", "K7X2M9", "k7x2m9-", "", "a=b", "k7x2m9 x"]),
                  st.sampled_from(["", " ", "\t"]), st.sampled_from(["", ";ttl=3", " ; p=1", ";"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(_members, max_size=4), st.one_of(st.none(), _ours), st.integers(0, 4), st.integers(1, 2))
def test_istio_regex_and_envoy_parser_agree(others, ours, position, headers):
    """The two carriers' implementations (RE2 for Istio, the reference the Lua filter mirrors) agree on
    every baggage list holding at most one member with our key."""
    members = list(others)
    if ours is not None:
        members.insert(min(position, len(members)), ours)
    joined = ",".join(members)
    # the same list split over one or two `baggage` headers
    values = [joined] if headers == 1 or len(members) < 2 else [",".join(members[:1]), ",".join(members[1:])]
    carried = key_from_baggage(values, BK)
    for key in ("k7x2m9", "k7x2m"):
        assert (re2.fullmatch(baggage_regex(BK, key), ",".join(values)) is not None) == (carried == key), values


def test_a_key_that_starts_with_baseline_keeps_its_route_in_a_merged_virtual_service(write):
    """The emitter knows which route is the default by structure, not by a name prefix."""
    files = {"b.yaml": BASELINE, "s.yaml": sandbox("baseline-fix", ("cartservice", "cart-fix.shop.svc.cluster.local")),
             "vs.yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\n"
                        "spec:\n  hosts: [cartservice]\n  http:\n  - route:\n    - destination: {host: cartservice}\n"}
    objs = istio.emit(compile_dir(write(files)), Diagnostics())
    cart = next(o.body for o in objs if o.name == "cart")
    routes = cart["spec"]["http"]
    assert [r.get("name") for r in routes] == ["meshforge-baseline-fix", None]
    assert routes[0]["route"][0]["destination"]["host"] == "cart-fix.shop.svc.cluster.local"
    assert routes[0]["match"][0]["headers"]["x-meshforge-routing-key"] == {"exact": "baseline-fix"}


def test_a_second_user_virtual_service_for_a_host_is_reported(write):
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\n"
          "spec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination: {{host: cartservice}}\n")
    files = {"b.yaml": BASELINE, "s.yaml": sandbox("pr-1", ("cartservice", "c1.shop.svc.cluster.local")),
             "vs.yaml": vs.format(name="cart-a", host="cartservice") + "---\n" +
             vs.format(name="cart-b", host="cartservice.shop.svc.cluster.local")}
    diags = Diagnostics()
    objs = istio.emit(compile_dir(write(files)), diags)
    assert [(d.code, d.span.line) for d in diags.items] == [("MF303", 10)]
    assert "shop/cart-b" in diags.items[0].message and "shop/cart-a" in diags.items[0].message
    vss = {o.name: o.body for o in objs if o.kind == "VirtualService"}
    assert sorted(vss) == ["cart-a", "cart-b"]  # both in the output; only the first has meshforge's routes
    assert vss["cart-a"]["spec"]["http"][0]["name"] == "meshforge-pr-1"
    assert all(r.get("name") != "meshforge-pr-1" for r in vss["cart-b"]["spec"]["http"])


def test_an_amended_protocol_the_cluster_does_not_know_is_reported(write):
    """A port named tcp-*, amended to gRPC in a Baseline: Istio reads the protocol from the Service in the
    cluster, so the routes apply only once it says so (MF225, naming the port's line); the Envoy backend,
    which reads no Service, says nothing."""
    from pathlib import Path

    amend = Path(__file__).resolve().parents[1] / "golden" / "amend" / "input"
    model, _ = compile_paths([str(amend)], NOW)
    legacy_only = compile_paths([str(amend / "manifests.yaml"), str(amend / "amendments.yaml")], NOW)[0]
    from dataclasses import replace

    legacy_only = replace(legacy_only, keys=tuple(
        replace(k, forks=tuple(f for f in k.forks if f.service == "legacy.shop")) for k in model.keys))
    for backend, m in (("istio", model), ("gateway-api", legacy_only)):
        diags = Diagnostics()
        backends.render(m, backend, diags)
        [w] = [d for d in diags.items if d.code == "MF225"]
        assert "port 9000 of Service legacy.shop is TCP" in w.message and "manifests.yaml:" in w.message
        assert w.span.file.endswith("amendments.yaml") and "appProtocol: grpc" in w.hint
    diags = Diagnostics()
    backends.render(model, "xds", diags)
    assert not [d for d in diags.items if d.code == "MF225"]


USER_VS = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: {name}
  namespace: shop
  labels: {{team: cart}}
  annotations: {{owner: cart-team{extra}}}
spec:
  hosts: [{host}]
  http:
  - route:
    - {{destination: {{host: {host}, subset: stable}}, weight: 90}}
    - {{destination: {{host: {host}, subset: canary}}, weight: 10}}
"""


def test_user_virtual_services_are_never_claimed_and_can_be_left_alone(write):
    """A VirtualService meshforge does not change comes out as written (its API version, labels and
    annotations, no managed-by label); one marked meshforge.dev/ignore, or whose weights an Argo Rollout
    manages, is left out entirely, and the fork of its host is reported (MF227)."""
    rollout = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  template: {metadata: {labels: {app: checkout}}, spec: {containers: [{name: c, image: x/checkout:1}]}}
  strategy:
    canary:
      canaryService: checkout-canary
      stableService: checkout
      trafficRouting: {istio: {virtualService: {name: checkout-vs}}}
"""
    files = {**SHOP, "rollout.yaml": rollout,
             "vs.yaml": "---\n".join([
                 USER_VS.format(name="untouched", host="redis-cart", extra=""),
                 USER_VS.format(name="cart-vs", host="cartservice", extra=", meshforge.dev/ignore: 'true'"),
                 USER_VS.format(name="checkout-vs", host="checkout", extra="")])}
    model = compile_dir(write(files))
    diags = Diagnostics()
    objs = {(o.namespace, o.name): o for o in istio.emit(model, diags)}
    untouched = objs[("shop", "untouched")].body
    assert untouched["apiVersion"] == "networking.istio.io/v1alpha3" and untouched["metadata"]["labels"] == {
        "team": "cart"} and untouched["metadata"]["annotations"] == {"owner": "cart-team"}
    assert errors(untouched) == []
    for name in ("cart-vs", "checkout-vs", "meshforge-cartservice", "meshforge-checkout"):
        assert ("shop", name) not in objs, name  # left alone, and no second VirtualService for the host
    alone = {d.message.split()[1]: d.message for d in diags.items if d.code == "MF227"}
    assert set(alone) == {"shop/cart-vs", "shop/checkout-vs"}
    assert "meshforge.dev/ignore" in alone["shop/cart-vs"] and "Argo Rollout shop/checkout" in alone["shop/checkout-vs"]


def test_keys_through_the_users_own_gateway_and_the_edges_gateway_hosts_are_reported(write):
    edge = ("apiVersion: meshforge.dev/v1alpha1\nkind: Baseline\nmetadata: {name: e, namespace: shop}\n"
            "spec: {edge: {service: frontend, hosts: [shop.example.com], previewDomain: preview.example.com, "
            "istioGateway: istio-system/ingressgateway}}\n")
    gw = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: public, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [istio-system/ingressgateway]
  http:
  - match: [{uri: {prefix: /cart}}]
    route: [{destination: {host: cartservice, port: {number: 7070}}}]
  - route: [{destination: {host: frontend}}]
"""
    model = compile_dir(write({**SHOP, "edge.yaml": edge, "gw.yaml": gw}))
    diags = Diagnostics()
    istio.emit(model, diags)
    codes = {d.code: d for d in diags.items if d.code in ("MF228", "MF229")}
    assert set(codes) == {"MF228", "MF229"}
    assert "cartservice.shop" in codes["MF228"].message and "reach the baseline" in codes["MF228"].message
    assert "istio-system/ingressgateway for *" in codes["MF229"].message
