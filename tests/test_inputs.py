"""controller/inputs: the cluster's objects compile as files do; a broken object holds back only itself; meshforge's
own objects are never inputs; each object is parsed once per resourceVersion."""

from __future__ import annotations

from meshforge.controller import inputs
from meshforge.controller.inputs import ClusterInputs, as_input, key_of, origin

from .conftest import NOW

META = {"namespace": "shop", "resourceVersion": "1", "uid": "u-1", "managedFields": [{"manager": "kubectl"}]}


def baseline() -> dict:
    return {"apiVersion": "meshforge.dev/v1alpha1", "kind": "Baseline",
            "metadata": {**META, "name": "staging", "generation": 2},
            "spec": {"services": [{"name": "web", "ports": [{"name": "http", "port": 80}], "dependsOn": ["cart"]},
                                  {"name": "cart", "ports": [{"name": "http", "port": 80}]}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def sandbox(name: str, service: str = "cart", version: str = "1") -> dict:
    return {"apiVersion": "meshforge.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {**META, "name": name, "resourceVersion": version},
            "spec": {"forks": [{"service": service, "to": {"host": f"{service}-{name}.shop.svc.cluster.local"}}]}}


def test_objects_become_the_documents_a_file_would_hold():
    b = baseline()
    assert key_of(b) == ("meshforge.dev", "Baseline", "shop", "staging") and origin(key_of(b)) == "Baseline/shop/staging"
    doc = as_input(b)
    assert "status" not in doc and doc["metadata"] == {"name": "staging", "namespace": "shop"}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {**META, "name": "cart", "ownerReferences": [{"name": "x"}]},
           "spec": {"ports": [{"port": 80}]}, "status": {}}
    assert as_input(svc)["metadata"] == {"name": "cart", "namespace": "shop", "ownerReferences": [{"name": "x"}]}


def test_a_broken_sandbox_is_left_out_and_the_rest_compiles():
    ci = ClusterInputs("shop")
    for obj in (baseline(), sandbox("pr-1"), sandbox("pr-2", service="nope")):
        ci.put(obj)
    out = ci.compile(NOW)
    assert out.model is not None and [s.name for s in out.model.sandboxes] == ["pr-1"]
    bad = ("meshforge.dev", "Sandbox", "shop", "pr-2")
    assert list(out.left_out) == [bad] and [d.code for d in out.left_out[bad]] == ["MF201"]
    assert out.left_out[bad][0].span.file == "Sandbox/shop/pr-2"  # the diagnostic names the object
    assert [s.name for s in ci.compile(NOW, skip={("meshforge.dev", "Sandbox", "shop", "pr-1")}).model.sandboxes] == []


def test_meshforge_s_own_objects_are_never_inputs_and_a_removed_object_goes():
    ci = ClusterInputs("shop")
    ci.put(baseline())
    fork = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cart-pr-1-0a1b2c3d", "namespace": "shop",
                         "labels": {"app.kubernetes.io/managed-by": "meshforge"}}, "spec": {}}
    ci.put(fork)
    assert key_of(fork) not in ci.objects
    ci.put(sandbox("pr-1"))
    ci.remove(sandbox("pr-1"))
    assert ci.compile(NOW).model.sandboxes == ()


def test_an_object_is_parsed_once_per_resource_version(monkeypatch):
    parsed = []
    real = inputs.parse_file
    monkeypatch.setattr(inputs, "parse_file", lambda docs, *a: parsed.append(docs[0].file) or real(docs, *a))
    ci = ClusterInputs("shop")
    ci.put(baseline())
    ci.put(sandbox("pr-1"))
    ci.compile(NOW)
    ci.compile(NOW)
    assert sorted(parsed) == ["Baseline/shop/staging", "Sandbox/shop/pr-1"]
    ci.put(sandbox("pr-1", version="2"))
    ci.compile(NOW)
    assert parsed[2:] == ["Sandbox/shop/pr-1"]
