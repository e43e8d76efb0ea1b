"""Resolution: route groups, conflicts, expiry, and independence from file and document order."""

import random
from datetime import datetime, timezone

from meshforge.pipeline import compile_paths

from .conftest import BASELINE, NOW
from .specs import route_group, sandbox


def compile_files(write, files, now=NOW):
    return compile_paths([str(write(files))], now)


def table(model):
    """The routing content of a model, without source positions."""
    return {k.key: (k.owner_kind, k.owner, {f.service: (f.sandbox, f.destination) for f in k.forks})
            for k in model.keys}


def test_sandbox_key_defaults_to_name_and_routes_its_forks(write):
    model, diags = compile_files(write, {"b.yaml": BASELINE,
                                         "s.yaml": sandbox("cart-pr-42", ("cartservice", "c42.shop.svc.cluster.local"))})
    assert model is not None and not diags.items
    kr = model.key_by_name["cart-pr-42"]
    assert kr.owner_kind == "Sandbox" and [f.service for f in kr.forks] == ["cartservice.shop"]
    assert model.destination_of("cartservice.shop", "cart-pr-42").destination.host == "c42.shop.svc.cluster.local"
    assert model.destination_of("checkout.shop", "cart-pr-42") is None
    assert model.destination_of("cartservice.shop", "other") is None


def test_route_group_by_names_and_by_labels_expands_members(write):
    files = {"b.yaml": BASELINE,
             "s1.yaml": sandbox("cart-pr-42", ("cartservice", "c.example.com"), labels="{feature: v2}"),
             "s2.yaml": sandbox("checkout-pr-7", ("checkout", "k.example.com"), ("payments.billing", "p.example.com"),
                                labels="{feature: v2}"),
             "g1.yaml": route_group("by-name", sandboxes=["cart-pr-42", "checkout-pr-7"]),
             "g2.yaml": route_group("by-label", labels="{feature: v2}", key="v2")}
    model, diags = compile_files(write, files)
    assert model is not None, diags.items
    t = table(model)
    assert set(t) == {"cart-pr-42", "checkout-pr-7", "by-name", "v2"}
    assert t["by-name"][2] == t["v2"][2]
    assert set(t["v2"][2]) == {"cartservice.shop", "checkout.shop", "payments.billing"}
    assert t["v2"][0:2] == ("RouteGroup", "by-label")
    assert t["v2"][2]["checkout.shop"][0] == "checkout-pr-7"


def test_route_group_conflict_is_an_error(write):
    files = {"b.yaml": BASELINE,
             "s.yaml": sandbox("a", ("cartservice", "a.example.com")) + "---\n" + sandbox("b", ("cartservice", "b.example.com")),
             "g.yaml": route_group("g", sandboxes=["a", "b"])}
    model, diags = compile_files(write, files)
    assert model is None and [d.code for d in diags.errors()] == ["MF204"]


def test_expired_sandbox_routes_nothing_and_warns(write):
    files = {"b.yaml": BASELINE,
             "s.yaml": sandbox("old", ("cartservice", "a.example.com"), expires="2026-11-01T00:00:00Z") + "---\n" +
             sandbox("new", ("checkout", "b.example.com"), expires="2026-12-01T00:00:00+01:00")}
    model, diags = compile_files(write, files)
    assert model is not None
    assert set(model.key_by_name) == {"new"}
    assert [d.code for d in diags.items] == ["MF209"]
    assert [s.expired for s in model.sandboxes] == [False, True]  # sorted by name: new, old
    later, _ = compile_files(write, files, datetime(2026, 12, 2, tzinfo=timezone.utc))
    assert later.keys == ()


def test_resolved_model_is_independent_of_file_and_document_order(tmp_path):
    docs = [BASELINE] + [sandbox(f"pr-{i}", ("cartservice" if i % 2 else "checkout", f"h{i}.example.com"),
                                 labels="{feature: f}" if i < 4 else "") for i in range(8)]
    docs.append(route_group("grp", sandboxes=["pr-0", "pr-1"]))
    results = []
    for seed in range(4):
        rng = random.Random(seed)
        order = docs[:]
        rng.shuffle(order)
        d = tmp_path / f"run{seed}"
        d.mkdir()
        names = [f"{rng.randint(0, 10**6):07d}-{j}.yaml" for j in range(3)]
        chunks = {n: [] for n in names}
        for j, doc in enumerate(order):
            chunks[names[j % 3]].append(doc)
        for n, c in chunks.items():
            (d / n).write_text("---\n".join(c))
        model, diags = compile_paths([str(d / n) for n in reversed(names)], NOW)
        assert model is not None, diags.items
        results.append((table(model), [(s.id, [(p.name, p.number, p.protocol) for p in s.ports],
                                        s.depends_on and [x.service for x in s.depends_on])
                                       for s in model.services]))
    assert all(r == results[0] for r in results)


def test_a_name_and_a_key_belong_to_their_first_declaration_by_position(write):
    """MF215 for a second sandbox of one name, MF205 for every later claim of a key (sandboxes first,
    then route groups), each naming where the first one is."""
    files = {"b.yaml": BASELINE,
             "a.yaml": sandbox("one", ("cartservice", "a.example.com"), key="k"),
             "b2.yaml": sandbox("two", ("checkout", "b.example.com"), key="k"),
             "c.yaml": sandbox("three", ("checkout", "c.example.com"), key="k") + "---\n" +
             sandbox("one", ("checkout", "d.example.com")),
             "g.yaml": route_group("grp", sandboxes=["two"], key="k")}
    model, diags = compile_files(write, files)
    assert model is None
    found = sorted((d.code, d.span.file.rsplit("/", 1)[-1], d.message) for d in diags.errors())
    first = next(d for d in diags.errors() if d.code == "MF205").message.rsplit(" at ", 1)[1]
    assert first.split("/")[-1].startswith("a.yaml:")
    assert [(c, f) for c, f, _ in found] == [("MF205", "b2.yaml"), ("MF205", "c.yaml"), ("MF205", "g.yaml"),
                                             ("MF215", "c.yaml")]
    assert all(m.endswith(first) for c, _, m in found if c == "MF205")
