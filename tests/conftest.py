"""Shared fixtures: paths to ../shared (overridable), the one fixed clock, a CLI runner, a spec
writer, and the --update-golden flag."""

from __future__ import annotations

import importlib
import os
import pkgutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from .specs import route_group, sandbox

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MESHFORGE_SHARED", REPO.parent / "shared"))
BOUTIQUE = SHARED / "datasets" / "online-boutique" / "kubernetes-manifests.yaml"
ISTIO_CRDS = SHARED / "istio" / "crd-all.gen.yaml"
NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)  # the clock of every test that fixes one


def _import_the_package() -> None:
    """Every meshforge module, imported before any test. Hypothesis draws some values from the literals of the
    local modules loaded so far (its "local constants"; none when meshforge is installed into site-packages, as
    CI does): without this, a derandomized test's examples would depend on which tests ran first in a worker."""
    import meshforge

    for m in pkgutil.walk_packages(meshforge.__path__, "meshforge."):
        importlib.import_module(m.name)


_import_the_package()


# -- the one spec builder: small specs shared by tests -------------------------------------------

BASELINE = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata:
  name: staging
  namespace: shop
spec:
  services:
  - name: frontend
    ports:
    - {name: http, port: 80}
    dependsOn: [cartservice, checkout]
  - name: cartservice
    ports:
    - {name: grpc, port: 7070}
    labels: {app: cartservice, version: v1}
    dependsOn: [redis-cart]
  - name: checkout
    ports:
    - {name: http-api, port: 8080}
    dependsOn: [cartservice, payments.billing]
  - name: payments
    namespace: billing
    ports:
    - {name: grpc, port: 50051}
  - name: redis-cart
    ports:
    - {name: tcp-redis, port: 6379}
"""


BK = "meshforge-routing-key"
# (baggage header values, the key they carry for "k7x2m9" purposes)
BAGGAGE_TABLE = [
    (["meshforge-routing-key=k7x2m9"], "k7x2m9"),
    (["meshforge-routing-key=k7x2m9;ttl=30"], "k7x2m9"),
    (["meshforge-routing-key = k7x2m9 ; p"], "k7x2m9"),
    (["userId=alice,meshforge-routing-key=k7x2m9,serverNode=DF%2028"], "k7x2m9"),
    (["userId=alice, meshforge-routing-key=k7x2m9"], "k7x2m9"),
    (["userId=alice,\tmeshforge-routing-key=k7x2m9\t"], "k7x2m9"),
    (["userId=alice", "meshforge-routing-key=k7x2m9"], "k7x2m9"),  # two baggage headers
    (["sentry-trace_id=abc,sentry-environment=prod,meshforge-routing-key=k7x2m9;property=x,isProduction=false"], "k7x2m9"),
    (["xmeshforge-routing-key=k7x2m9"], None),
    (["meshforge-routing-key-x=k7x2m9"], None),
    (["meshforge-routing-key=k7x2m9x"], "k7x2m9x"),
    (["meshforge-routing-key=k7x2m"], "k7x2m"),
    (["meshforge-routing-key=xk7x2m9"], "xk7x2m9"),
    (["other=meshforge-routing-key=k7x2m9"], None),
    (["other=1;meshforge-routing-key=k7x2m9"], None),
    (["k7x2m9"], None),
    ([""], None),
    (["meshforge-routing-key="], None),
    # names encoded as propagators decode them (percent-encoding, '+' for a blank)
    (["meshforge%2Drouting%2Dkey=k7x2m9"], "k7x2m9"),
    (["meshforge%2drouting%2dkey=k7x2m9"], "k7x2m9"),
    (["userId=a,%6Deshforge-routing-key=k7x2m9"], "k7x2m9"),
    (["meshforge-routing-key+=k7x2m9"], "k7x2m9"),
    (["+meshforge-routing-key=k7x2m9"], "k7x2m9"),
    (["%20meshforge-routing-key%09=k7x2m9"], "k7x2m9"),
    (["meshforge-routing-key%3D=k7x2m9"], None),
    (["meshforge-routing-key=k7x2m9%20"], None),
    (["meshforge%2Drouting%2Dkey-x=k7x2m9"], None),
]
# encodings only the Envoy filters and the edge patterns see as the routing-key member (rarer whitespace)
EDGE_ONLY_ENCODINGS = ["%0Bmeshforge-routing-key=k7x2m9", "meshforge-routing-key%C2%A0=k7x2m9",
                       "meshforge-routing-key%E3%80%80=k7x2m9", "%1Fmeshforge%2Drouting-key=k7x2m9"]


SHOP = {
    "b.yaml": BASELINE.replace("    - {name: grpc, port: 50051}\n",
                               "    - {name: grpc, port: 50051}\n    labels: {app: payments, version: v1}\n")
    .replace("    - {name: http-api, port: 8080}\n", "    - {name: http-api, port: 8080}\n    - {name: grpc-admin, port: 9090}\n"),
    "s.yaml": sandbox("cart-pr-42", ("cartservice", "cart-42.shop.svc.cluster.local"), key="k7x2m9",
                      labels="{feature: v2}") + "---\n" + """\
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {name: checkout-pr-7, namespace: shop, labels: {feature: v2}}
spec:
  forks:
  - service: checkout
    to: {endpoints: [{address: 10.1.2.3, port: 18080}]}
  - service: payments.billing
    to: {subset: {labels: {version: pr-7}}}
---
""" + sandbox("old", ("frontend", "old.example.com"), expires="2026-01-01T00:00:00Z"),
    "g.yaml": route_group("v2", labels="{feature: v2}"),
}


def pytest_configure(config):
    """Everything the suite writes goes to one directory, removed at the end: nothing is left in /tmp
    (tests, the servers and Envoys they start, and their subprocesses all honour TMPDIR)."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="meshforge-tests-")
    config._meshforge_tmp = top
    os.environ["TMPDIR"] = top
    tempfile.tempdir = top
    if config.option.basetemp is None:
        config.option.basetemp = os.path.join(top, "pytest")
    config.add_cleanup(lambda: shutil.rmtree(top, ignore_errors=True))


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden/ expected outputs from the current code (review the diff!)")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture
def cli():
    from meshforge.cli import main

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def write(tmp_path):
    """write({"a.yaml": text, ...}) -> the directory."""

    def _write(files: dict[str, str], sub: str = "specs") -> Path:
        d = tmp_path / sub
        for name, text in files.items():
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return d

    return _write


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    """A real kube-apiserver (and etcd) for the module's tests (tests/kube_harness.py)."""
    from .kube_harness import start_api_server, stop_api_server

    k = start_api_server(tmp_path_factory.mktemp("kube"))
    try:
        yield k
    finally:
        stop_api_server(k)
