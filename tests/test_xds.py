"""controller/xds: the controller's compiler for `serve`'s control plane - the reconcile's model in, a Result out."""

from __future__ import annotations

from meshforge.controller.xds import ClusterCompiler
from meshforge.pipeline import compile_paths

from .conftest import BASELINE, NOW
from .specs import sandbox


def test_nothing_is_served_before_the_cluster_is_read_and_then_the_model_is(write):
    c = ClusterCompiler()
    first = c.compile(NOW)
    assert first.snapshot is None and first.errors == ["the cluster has not been read yet"]
    assert c.inputs().roots == [] and not c.inputs().relevant("/specs/a.yaml") and c.verify() == []
    model, diags = compile_paths([str(write({"baseline.yaml": BASELINE,
                                              "pr.yaml": sandbox("pr-1", ("cartservice", "cart-pr-1.shop"))}))], NOW)
    assert model is not None, diags.items
    c.model = model
    result = c.compile(NOW)
    assert result.snapshot is not None and set(result.snapshot.nodes) >= {s.id for s in model.services}
    assert result.is_known(model.keys[0].key) and not result.is_known("no-such-key")
    assert {s["id"] for s in result.overview()["services"]} >= {s.id for s in model.services}
    again = c.compile(NOW)  # the same model: every node's configuration is the very same object
    assert all(again.snapshot.nodes[n] is result.snapshot.nodes[n] for n in result.snapshot.nodes)
