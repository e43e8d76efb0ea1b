"""Every golden case produces exactly its expected files (diagnostics and each backend's output)."""

import json

import pytest

from .conftest import SHARED
from .golden import GOLDEN, cases, check, expected, outputs


@pytest.mark.parametrize("case", cases())
def test_golden_case(case, update_golden):
    differ = check(case, update_golden)
    assert not differ, (f"golden/{case}: outputs differ from expected: {differ}; "
                        "review, then rerun with --update-golden if the change is intended")


def test_golden_cases_exist():
    assert len(cases()) >= 10, f"golden cases vanished from {GOLDEN}"


def test_invalid_cases_emit_nothing_but_diagnostics():
    for case in cases():
        if case.startswith("error-"):
            assert set(outputs(case)) == {"diagnostics.txt"}, case


@pytest.mark.parametrize("case", cases())
def test_golden_istio_outputs_validate_strictly_against_istio_crds(case):
    import yaml

    from .istio_schema import errors

    docs = [yaml.safe_load(t) for n, t in outputs(case).items() if n.startswith("istio/") and n.endswith(".yaml")]
    for doc in docs:
        assert errors(doc) == [], (case, doc["kind"], doc["metadata"]["name"])
    if not case.startswith("error-"):
        assert docs or case == "warning-expired" or "expired" in case, f"{case} rendered no Istio objects"


@pytest.mark.parametrize("case", cases())
def test_golden_gateway_api_outputs_validate_strictly_against_gateway_api_crds(case):
    import yaml

    from .istio_schema import gateway_errors

    for name, text in outputs(case).items():
        if name.startswith("gateway-api/") and name.endswith(".yaml"):
            doc = yaml.safe_load(text)
            assert gateway_errors(doc) == [], (case, name, gateway_errors(doc))


@pytest.mark.parametrize("case", [c for c in cases() if "model.json" in expected(c)])
def test_backends_render_the_same_from_the_model_file(case):
    """Backends are tested from their serialised input too: expected/model.json → every backend's files."""
    from meshforge.model import from_json

    from .golden import backend_outputs, model_json

    files = expected(case)
    model = from_json(json.loads(files["model.json"].replace("$SHARED", str(SHARED))))
    assert model_json(model) == files["model.json"]
    got = backend_outputs(model)
    assert got == {n: t for n, t in files.items() if "/" in n}


@pytest.mark.parametrize("case", [c for c in cases() if any(n.startswith("kubernetes/") for n in expected(c))])
def test_golden_kubernetes_outputs_validate_strictly_against_kubernetes(case):
    import kubernetes_validate
    import yaml

    version = kubernetes_validate.latest_version()
    docs = [yaml.safe_load(t) for n, t in expected(case).items() if n.startswith("kubernetes/") and n.endswith(".yaml")]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
