"""The strict Istio validator itself: it must reject what Istio would reject."""

from .istio_schema import errors, validators


def test_validators_cover_the_kinds_we_emit():
    assert {"VirtualService", "DestinationRule", "ServiceEntry"} <= set(validators())


def test_unknown_fields_and_wrong_types_are_rejected():
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "x"},
          "spec": {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a", "prot": {"number": 1}}}]}]}}
    assert any("prot" in e for e in errors(vs))
    vs["spec"]["http"][0]["route"][0]["destination"] = {"host": "a", "port": {"number": "80"}}
    assert errors(vs)
    vs["spec"]["http"][0]["route"][0]["destination"] = {"host": "a", "port": {"number": 80}}
    assert errors(vs) == []
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x"},
          "spec": {"hosts": ["a"], "resolution": "MAYBE"}}
    assert errors(se)


def test_cel_rules_of_the_crds_are_enforced():
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x"},
          "spec": {"hosts": ["a.example"], "resolution": "STATIC", "ports": [{"number": 80, "name": "http"}],
                   "endpoints": [{"address": "10.0.0.1", "ports": {"http": 8080}}]}}
    assert errors(se) == []
    se["spec"]["ports"].append({"number": 80, "name": "http-2"})  # duplicate port number
    se["spec"]["hosts"] = ["*"]
    se["spec"]["resolution"] = "NONE"  # NONE may not have endpoints
    got = errors(se)
    assert len(got) == 3, got
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "x"},
          "spec": {"hosts": ["a"], "http": [{"timeout": "0s", "route": [{"destination": {"host": "a"}}]}]}}
    assert any("timeout" in e for e in errors(vs))
