"""`render --format gateway-api`, judged by Istio's Gateway API implementation: for every golden case with
Gateway API output, Istio's GAMMA translation of the HTTPRoutes and GRPCRoutes attached to Services (with the
user's own routes, and the Gateway API CRDs of ../shared/gateway-api/ installed as a cluster has them) runs
on a real Envoy and every key variant of `istio_conformance.variants` lands where `gateway_eval.py` says; the
edge's HTTPRoutes on a Gateway of class istio. Where Istio answers otherwise, Istio is right."""

from __future__ import annotations

import pytest

from .istio_conformance import build, check_edge, check_golden_case, golden_cases


@pytest.fixture(scope="module")
def translator():
    build()


@pytest.mark.parametrize("case", golden_cases("gateway-api"))
def test_istio_gamma_routes_meshforges_output_as_meshforge_means(case, translator, tmp_path):
    check_golden_case("gateway-api", case, tmp_path)


def test_edge_routes_on_an_istio_gateway_api_gateway(translator, tmp_path):
    check_edge("gateway-api", tmp_path)
