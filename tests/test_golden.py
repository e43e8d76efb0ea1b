"""Every golden case produces exactly its expected files (diagnostics and each backend's output)."""

import pytest

from .golden import GOLDEN, cases, check, outputs


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
