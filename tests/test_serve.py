"""`meshforge serve` end to end: a chain of three services, each with its own real Envoy sidecar,
over state-of-the-world and delta xDS; live edits while traffic flows; invalid edits; restarts; replicas."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from .serve_harness import (
    CLUSTER,
    LISTENER,
    RawClient,
    Server,
    Sidecar,
    node,
    wait_until,
)
from .shop_mesh import ShopMesh
from .specs import sandbox


def write_atomically(path, text: str) -> None:
    tmp = path.with_suffix(".tmp~")
    tmp.write_text(text)
    tmp.replace(path)


class Mesh(ShopMesh):
    """web → cart → pay, each app behind its own sidecar (pay's with no app behind it); cart-v2 and pay-v2 are
    sandbox versions (cart-pr-1 forks cart to cart-v2)."""

    def __init__(self, tmp_path, delta: bool):
        super().__init__(tmp_path, {"pay-v2": ("pay", {}), "cart-v2": ("cart", {})}, {"cart-pr-1": "cart-v2"},
                         [("web", "web-v1"), ("cart", "cart-v1"), ("cart", "cart-v2"), ("pay", None)], delta=delta,
                         wait=Mesh.wait_routes)
        self.pay2, self.cart2 = self.apps["pay-v2"], self.apps["cart-v2"]

    def wait_routes(self):
        wait_until(lambda: self.chain({"baggage": "meshforge-routing-key=cart-pr-1"})[1] == "cart-v2", 20,
                   what="sidecars configured")


@pytest.fixture(params=["sotw", "delta"])
def mesh(request, tmp_path):
    m = Mesh(tmp_path, request.param == "delta")
    try:
        yield m
    finally:
        m.close()


KEY = {"baggage": "meshforge-routing-key=cart-pr-1"}


def test_per_hop_routing_with_and_without_key(mesh):
    assert mesh.chain() == ["web-v1", "cart-v1", "pay-v1"]
    assert mesh.chain(KEY) == ["web-v1", "cart-v2", "pay-v1"]
    assert mesh.chain({"baggage": "userId=7, meshforge-routing-key=cart-pr-1;ttl=1"}) == ["web-v1", "cart-v2", "pay-v1"]
    assert mesh.chain({"baggage": "meshforge-routing-key=nobody"}) == ["web-v1", "cart-v1", "pay-v1"]
    # the key travelled in baggage through every hop, so the last hop saw it too
    assert mesh.request(KEY)["next"]["next"]["key"] == "cart-pr-1"


class Traffic:
    """Requests in a loop from a thread: every answer is recorded; failures are kept."""

    def __init__(self, mesh, headers):
        self.mesh, self.headers = mesh, headers
        self.results: list[tuple[str, ...]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                chain = tuple(self.mesh.chain(self.headers))
                if any(c.startswith("HTTP") for c in chain):
                    self.failures.append(str(chain))
                self.results.append(chain)
            except Exception as e:  # noqa: BLE001
                self.failures.append(repr(e))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def test_sandbox_added_edited_deleted_while_traffic_flows(mesh):
    key2 = {"baggage": "meshforge-routing-key=pay-pr-2"}
    f = mesh.dir / "pay-pr-2.yaml"
    with Traffic(mesh, key2) as t2, Traffic(mesh, KEY) as t1, Traffic(mesh, None) as t0:
        time.sleep(0.3)
        write_atomically(f, sandbox("pay-pr-2", ("pay", mesh.pay2.port)))
        wait_until(lambda: mesh.chain(key2) == ["web-v1", "cart-v1", "pay-v2"], 10, what="new sandbox routed")
        time.sleep(0.3)
        write_atomically(f, sandbox("pay-pr-2", ("pay", mesh.pay2.port), ("cart", mesh.cart2.port)))
        wait_until(lambda: mesh.chain(key2) == ["web-v1", "cart-v2", "pay-v2"], 10, what="edited sandbox routed")
        time.sleep(0.3)
        f.unlink()
        wait_until(lambda: mesh.chain(key2) == ["web-v1", "cart-v1", "pay-v1"], 10, what="deleted sandbox gone")
        time.sleep(0.3)
    assert not (t0.failures + t1.failures + t2.failures), (t0.failures, t1.failures, t2.failures)
    assert set(t0.results) == {("web-v1", "cart-v1", "pay-v1")}
    assert set(t1.results) == {("web-v1", "cart-v2", "pay-v1")}  # the other sandbox never flapped
    seen = Counter(t2.results)
    assert {("web-v1", "cart-v1", "pay-v2"), ("web-v1", "cart-v2", "pay-v2")} <= set(seen)
    assert min(len(t0.results), len(t1.results), len(t2.results)) > 10


def test_invalid_edit_keeps_last_good_config(mesh):
    f = mesh.dir / "cart-pr-1.yaml"
    good = f.read_text()
    bad = good.replace("service: cart", "service: kart")
    write_atomically(f, bad)
    line = next(i for i, text in enumerate(bad.splitlines(), 1) if "service: kart" in text)
    column = bad.splitlines()[line - 1].index("kart") + 1
    wait_until(lambda: "unknown service 'kart'" in mesh.server.get("/readyz")[1], 10, what="error reported")
    status, body = mesh.server.get("/readyz")
    assert status == 200 and f"cart-pr-1.yaml:{line}:{column}: error[MF201]" in body and 'did you mean "cart"?' in body
    assert mesh.server.metric("meshforge_spec_valid") == 0 and mesh.server.metric("meshforge_spec_errors") == 1
    assert "error[MF201]" in mesh.server.log()
    assert mesh.chain(KEY) == ["web-v1", "cart-v2", "pay-v1"]  # still the last good configuration
    write_atomically(f, good)
    wait_until(lambda: mesh.server.get("/readyz")[1] == "ready\n", 10, what="recovered")
    assert mesh.server.metric("meshforge_spec_valid") == 1


def test_server_restart_keeps_routing_and_reconverges_without_flaps(mesh):
    before = {n: sc.dynamic_versions() for n, sc in mesh.sidecars.items()}
    assert all(before.values())
    with Traffic(mesh, KEY) as t1, Traffic(mesh, None) as t0:
        mesh.server.stop()
        time.sleep(0.5)  # Envoys keep serving what they have
        assert mesh.chain(KEY) == ["web-v1", "cart-v2", "pay-v1"]
        mesh.server.start()
        wait_until(lambda: all(sc.stat("control_plane.connected_state") == 1 for sc in mesh.sidecars.values()), 20,
                   what="sidecars reconnected")
        time.sleep(0.5)
    assert not (t0.failures + t1.failures)
    assert set(t1.results) == {("web-v1", "cart-v2", "pay-v1")} and set(t0.results) == {("web-v1", "cart-v1", "pay-v1")}
    after = {n: sc.dynamic_versions() for n, sc in mesh.sidecars.items()}
    assert after == before  # same content-hash versions: nothing was replaced
    # and the rest of the mesh still converges on changes after the restart
    (mesh.dir / "pay-pr-3.yaml").write_text(sandbox("pay-pr-3", ("pay", mesh.pay2.port)))
    wait_until(lambda: mesh.chain({"baggage": "meshforge-routing-key=pay-pr-3"})[-1] == "pay-v2", 10)


def test_second_replica_serves_identical_versions(mesh):
    with Server([mesh.dir]) as replica:
        other = Sidecar("cart.shop", replica, mesh.delta)
        with other:
            wait_until(lambda: len(other.dynamic_versions()) == len(mesh.sidecars["cart-v1"].dynamic_versions()), 20)
            ours, theirs = other.dynamic_versions(), mesh.sidecars["cart-v1"].dynamic_versions()
            # the listener differs only because each sidecar chose its own outbound port
            drop = "listener/meshforge_outbound"
            assert {k: v for k, v in ours.items() if k != drop} == {k: v for k, v in theirs.items() if k != drop}
        # the same node asking both replicas gets the same version of every type, listener included
        versions = []
        for srv in (mesh.server, replica):
            c = RawClient(srv.xds_port)
            try:
                got = {}
                for t in (CLUSTER, LISTENER):
                    c.send(node=node("cart.shop"), type_url=t)
                    got[t] = c.recv().version_info
                versions.append(got)
            finally:
                c.close()
        assert versions[0] == versions[1]


def test_expiry_takes_effect_without_a_file_change(mesh):
    from datetime import datetime, timedelta, timezone

    soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = sandbox("pay-pr-4", ("pay", mesh.pay2.port), expires=soon)
    (mesh.dir / "pay-pr-4.yaml").write_text(text)
    k = {"baggage": "meshforge-routing-key=pay-pr-4"}
    wait_until(lambda: mesh.chain(k)[-1] == "pay-v2", 10, what="sandbox routed")
    wait_until(lambda: mesh.chain(k)[-1] == "pay-v1", 10, what="sandbox expired")
    assert "expired" in mesh.server.log()


def test_moving_a_directory_of_specs_away_is_noticed(mesh):
    sub = mesh.dir / "team-a"
    sub.mkdir()
    (sub / "pay-pr-5.yaml").write_text(sandbox("pay-pr-5", ("pay", mesh.pay2.port)))
    k = {"baggage": "meshforge-routing-key=pay-pr-5"}
    wait_until(lambda: mesh.chain(k)[-1] == "pay-v2", 10, what="sandbox in a subdirectory routed")
    sub.rename(mesh.dir.parent / "team-a-moved")  # one inotify event for the directory, none per file
    wait_until(lambda: mesh.chain(k)[-1] == "pay-v1", 10, what="moved-away sandbox gone")


def test_churn_of_60_sandboxes_under_load_fails_and_misroutes_nothing(mesh):
    """Sandboxes come and go (one every 20 ms, added then removed) while traffic with and without keys
    flows: every request succeeds and reaches exactly the versions its key says, throughout."""
    churned = {"baggage": "meshforge-routing-key=churn-7"}
    with Traffic(mesh, None) as t0, Traffic(mesh, KEY) as t1, Traffic(mesh, churned) as t2:
        for i in range(60):
            forks = [("pay", mesh.pay2.port)] if i % 2 else [("cart", mesh.cart2.port), ("pay", mesh.pay2.port)]
            write_atomically(mesh.dir / f"churn-{i}.yaml", sandbox(f"churn-{i}", *forks))
            time.sleep(0.02)
        wait_until(lambda: mesh.chain(churned) == ["web-v1", "cart-v1", "pay-v2"], 10, what="churned key routed")
        for i in range(60):
            (mesh.dir / f"churn-{i}.yaml").unlink()
            time.sleep(0.02)
        wait_until(lambda: mesh.chain(churned) == ["web-v1", "cart-v1", "pay-v1"], 10, what="churned key gone")
        time.sleep(0.3)
    assert not (t0.failures + t1.failures + t2.failures), (t0.failures[:3], t1.failures[:3], t2.failures[:3])
    assert set(t0.results) == {("web-v1", "cart-v1", "pay-v1")}
    assert set(t1.results) == {("web-v1", "cart-v2", "pay-v1")}
    assert set(t2.results) <= {("web-v1", "cart-v1", "pay-v1"), ("web-v1", "cart-v1", "pay-v2")}
    assert min(len(t0.results), len(t1.results), len(t2.results)) > 20
